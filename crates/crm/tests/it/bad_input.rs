//! Bad input never panics and errors name the element.

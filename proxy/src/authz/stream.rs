//! Stream filtering (filled in below).

//! explain (filled in below).

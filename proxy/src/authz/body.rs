//! Body-aware authorization (filled in below).

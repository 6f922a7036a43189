//! Where the machine config comes from: the kernel command line, a URL, or
//! a labelled partition.

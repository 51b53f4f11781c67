"""The light base: errors, signals, command-line helpers, atomic files, PNG/npz,
platform kernels."""

"""Sub-commands of `cio-mavera`: each module exposes `register(subparsers)`."""

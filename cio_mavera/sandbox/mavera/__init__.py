"""The Mavera API of the sandbox: one module per resource, assembled into one app in `api`."""

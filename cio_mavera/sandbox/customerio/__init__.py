"""The Customer.io App and Track APIs of the sandbox: one module per resource, one app per API."""

"""cio_mavera: Customer.io data + Mavera personas, as a notebook research kit."""

__version__ = "0.1.0"

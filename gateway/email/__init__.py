"""What every email part shares: the ``[email]``/``[smtp]`` settings and the link service."""

"""HTTP edge (I/O layer): one aiohttp application; each module here registers its routes."""

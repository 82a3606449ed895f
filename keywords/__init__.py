"""Pure consent core: normalization, keyword catalogs, classification and the consent decision."""

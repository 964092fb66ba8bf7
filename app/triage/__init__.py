"""The caseworkers' queue: listing tips by their workflow metadata and reading them."""

"""Route modules, one per resource. Routes are thin: parse, authorize, call, shape."""

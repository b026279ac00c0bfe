"""How a mock provider misbehaves: each fault on the wire, and which requests it hits."""

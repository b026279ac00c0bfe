"""What a healthy mock provider answers on each endpoint, in the providers' shapes."""

"""What requests cost: exact prices, usage records, their writer, client keys' spend and budgets."""

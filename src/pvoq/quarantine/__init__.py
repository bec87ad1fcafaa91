"""The manager's Policy, Virus and Outbreak quarantines."""

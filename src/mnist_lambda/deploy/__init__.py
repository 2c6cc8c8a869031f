"""Where the function runs and its data lives: the targets (local, sam-local, aws), the SAM CLI
for AWS, and S3 data."""

"""Read models: jobs and executions as the API serves them, with pagination."""

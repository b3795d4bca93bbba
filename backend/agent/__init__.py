"""The agent loop: the model's streamed reply and the tools it runs in the sandbox."""

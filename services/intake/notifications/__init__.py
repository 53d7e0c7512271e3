"""In-app notifications: the list, read marks and the live Server-Sent Event stream."""

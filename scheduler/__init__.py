"""The scheduler: keeps actors' images checked and their inboxes served."""

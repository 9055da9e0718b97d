"""Small tools that ship with the course (the exercise checklist)."""

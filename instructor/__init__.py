"""Instructor tools: the student edition, its proof, grading. Never shipped to students."""

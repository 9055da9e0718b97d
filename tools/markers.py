"""The strings that mark a student's work in the course's files, shared by the student's tools (the checklist)
and the instructor's (the edition, grading), so that both always read the same marks."""

STUDENT_BEGIN = "### YOUR CODE BEGINS (keep this line)"
STUDENT_END = "### YOUR CODE ENDS (keep this line)"
#: Text that every stub's message contains, so that tools recognise an exercise not started.
STUB_TAG = "is yours to write"
#: What an answer cell holds until the student writes the answer.
ANSWER_STUB = "*Your answer here.*"

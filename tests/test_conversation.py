from minigpt4_ui.conversation import Turn, fold

TURNS = [Turn("What is it?", "A red square."), Turn("Is it big?", "It is 320 pixels wide.")]


def test_first_question_is_sent_as_is():
    assert fold([], "What is it?", max_length=4000, max_new_tokens=3000).prompt == "What is it?"


def test_earlier_turns_use_minigpt4_separators_oldest_first():
    folded = fold(TURNS, "Why red?", max_length=4000, max_new_tokens=3000)
    assert folded.prompt == ("What is it?###Assistant: A red square.###Human: "
                             "Is it big?###Assistant: It is 320 pixels wide.###Human: Why red?")
    assert (folded.kept, folded.dropped) == (2, 0)


def test_oldest_turns_are_dropped_when_the_budget_is_small():
    # 4 spare tokens beyond the template: room for the newest turn only.
    newest = len("Is it big?###Assistant: It is 320 pixels wide.###Human: Why red?")
    max_length = 3000 + 80 + (newest + 3) // 4
    folded = fold(TURNS, "Why red?", max_length=max_length, max_new_tokens=3000)
    assert folded.prompt.startswith("Is it big?")
    assert (folded.kept, folded.dropped) == (1, 1)


def test_no_budget_left_sends_only_the_question():
    folded = fold(TURNS, "Why red?", max_length=100, max_new_tokens=3000)
    assert (folded.prompt, folded.kept, folded.dropped) == ("Why red?", 0, 2)


def test_a_character_cap_also_limits_the_prompt():
    folded = fold(TURNS, "Why red?", max_length=100_000, max_new_tokens=10, max_chars=70)
    assert folded.kept == 1 and len(folded.prompt) <= 70

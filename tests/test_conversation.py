from minigpt4_ui.shared import schema
from minigpt4_ui.app.conversation import Turn, fold, model_inputs
from minigpt4_ui.server.catalog import HOSTED

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


# --- other models: history input, blip-2's context, a neutral transcript ---------------------------

EARLIER = [Turn("What is it?", "A flag."), Turn("Which colours?", "Blue and white.")]


def test_a_history_input_gets_the_earlier_messages_alternating():
    spec = HOSTED["yorickvp/llava-v1.6-vicuna-13b"].spec
    turn = model_inputs(spec, EARLIER, "Whose flag?", {"temperature": 0.5})
    assert turn.inputs == {"temperature": 0.5, "prompt": "Whose flag?",
                           "history": ["What is it?", "A flag.", "Which colours?", "Blue and white."]}
    assert (turn.kept, turn.dropped) == (2, 0)


def test_minigpt4_keeps_its_separators():
    turn = model_inputs(schema.SPEC, EARLIER[:1], "Whose flag?", schema.defaults())
    assert turn.inputs["prompt"] == "What is it?###Assistant: A flag.###Human: Whose flag?"
    assert turn.inputs["num_beams"] == 3


def test_blip2_gets_earlier_turns_in_its_own_context_form():
    spec = HOSTED["andreasjansson/blip-2"].spec
    turn = model_inputs(spec, EARLIER, "Whose flag?", {})
    assert turn.inputs == {"question": "Whose flag?", "context": "Question: What is it? Answer: A flag. "
                                                                 "Question: Which colours? Answer: Blue and white."}


def test_other_models_get_a_neutral_transcript_keeping_the_newest_turns():
    spec = HOSTED["yorickvp/llava-13b"].spec
    turn = model_inputs(spec, EARLIER, "Whose flag?", {}, max_chars=70)
    assert turn.inputs["prompt"] == "User: Which colours?\nAssistant: Blue and white.\nUser: Whose flag?"
    assert (turn.kept, turn.dropped) == (1, 1)
    assert model_inputs(spec, [], "Hi", {}).inputs == {"prompt": "Hi"}

"""The built-in predictor's answer to single and multi-turn prompts."""

from PIL import Image

from minigpt4_ui.conversation import Turn, fold
from minigpt4_ui.server.predictors.builtin import answer, measure

FACTS = measure(Image.new("RGB", (300, 200), (200, 35, 35)))


def test_a_single_question_is_quoted():
    text = answer("What is it?", FACTS)
    assert text.startswith("You asked: “What is it?”. I am the built-in demo predictor, not MiniGPT-4")
    assert "300×200 landscape image, mostly red" in text


def test_a_folded_prompt_is_answered_for_its_last_question():
    prompt = fold([Turn("What is it?", "Red."), Turn("Big?", "No.")], "Why red?",
                  max_length=4000, max_new_tokens=3000).prompt
    assert answer(prompt, FACTS).startswith(
        "You asked: “Why red?”, following 2 earlier turns of our conversation. I am")

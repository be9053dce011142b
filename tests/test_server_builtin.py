"""The built-in predictor's answer to single and multi-turn prompts."""

from PIL import Image

from minigpt4_ui.app.conversation import Turn, fold
from minigpt4_ui.server.predictors.builtin import answer, measure

FACTS = measure(Image.new("RGB", (300, 200), (200, 35, 35)))


def test_an_open_question_gets_the_full_report_and_says_what_it_is():
    text = answer("What is it?", FACTS)
    assert text.startswith("This 300×200 landscape image is mostly red")
    assert "it is not MiniGPT-4" in text and text.endswith("Ask MiniGPT-4 itself for that.")


def test_the_answer_follows_the_question():
    assert answer("Write a caption", FACTS).startswith("A red landscape picture")
    assert answer("Describe it in one sentence.", FACTS).startswith("It is a 300×200 landscape image")
    assert answer("What colour is it?", FACTS).startswith("Mostly red: red 100%")
    assert answer("How big is it?", FACTS).startswith("The image is 300×200 pixels")
    assert answer("Is it dark?", FACTS).startswith("It is dark: mean brightness 33%")
    assert len(answer("Describe it in one sentence.", FACTS).split(".")) == 2  # one sentence


def test_a_folded_prompt_is_answered_for_its_last_question():
    prompt = fold([Turn("What is it?", "Red."), Turn("Big?", "No.")], "Why red?",
                  max_length=4000, max_new_tokens=3000).prompt
    assert "(after 2 earlier turns)" in answer(prompt, FACTS)
    assert answer(prompt, FACTS).startswith("This 300×200")

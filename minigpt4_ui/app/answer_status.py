"""An answer's state in words, for the status block above it in the chat (and Compare's panes)."""

from __future__ import annotations

from . import answer_text, chat, wording

# Past this many seconds in "starting", the model is most likely being loaded onto a GPU.
COLD_BOOT_AFTER = 5.0


def status_title(progress: chat.Progress) -> str:
    """The state of an answer in words (no emoji carries meaning): status, elapsed seconds."""
    if progress.status == "succeeded":
        return f"Done in {progress.elapsed:.1f} s"
    if progress.status == "failed":
        return answer_text.markdown(wording.model_failed(progress.error))
    if progress.status in ("canceled", "aborted"):
        return f"Stopped by you after {progress.elapsed:.1f} s"
    if progress.status == "starting" and progress.elapsed >= COLD_BOOT_AFTER:
        return (f"Starting · {progress.elapsed:.0f} s · cold boot: the model is being loaded, "
                "which can take a few minutes")
    return f"{progress.status.capitalize()} · {progress.elapsed:.0f} s"


def status_title_by(progress: chat.Progress, answered_by: str) -> str:
    """The status title, naming who writes the answer once it is being written or has ended."""
    title = status_title(progress)
    if answered_by and progress.status in ("processing", "succeeded", "canceled"):
        title += f" · {answered_by}"
    return title


def status_details(progress: chat.Progress) -> str:
    """What opens under the status: prediction id, predict time, link and logs, once."""
    facts = []
    if progress.prediction_id:
        facts.append(f"Prediction `{progress.prediction_id}`")
    if progress.predict_time is not None:
        facts.append(f"predict time {progress.predict_time:.1f} s")
    if progress.web_url:
        facts.append(f"[open on Replicate]({progress.web_url})")
    details = " · ".join(facts)
    if progress.logs.strip():
        details += f"\n\nLogs:\n{answer_text.code_block(progress.logs.strip())}"
    return details

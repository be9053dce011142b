// What the page does in the browser beyond Gradio's own components (ui.py puts it in <head>).

// Two of Gradio's own buttons have no accessible name: the image in a question (it opens a
// preview) and the arrow that opens a status block. Name them as they appear.
new MutationObserver(() => {
  for (const button of document.querySelectorAll("button:not([data-named])")) {
    if ((button.getAttribute("aria-label") || button.innerText || button.title || "").trim()) continue;
    if (button.querySelector("img")) button.setAttribute("aria-label", "Show the image larger");
    else if (button.querySelector(".dropdown-arrow")) button.setAttribute("aria-label", "Show or hide the details");
    button.dataset.named = "1";
  }
}).observe(document.documentElement, {childList: true, subtree: true});

// The keyboard and the side panel ("Settings and history"): opening it moves focus to its heading,
// Esc closes it, and closing it gives focus back to the button that opened it. (While closed it is
// out of the Tab order: page.css hides it.)
(() => {
  const panel = () => document.getElementById("settings");
  const isOpen = () => Boolean(panel()?.classList.contains("open"));
  let opener = null;
  let wasOpen = false;
  // The panel's content becomes visible over a few frames (Gradio fades its blocks in), and a
  // hidden element cannot take focus: try again each frame until it does.
  const focusHeading = (tries) => {
    const heading = panel()?.querySelector(".sidebar-content :is(h1, h2, h3)");
    if (!heading || !isOpen()) return;
    heading.tabIndex = -1;
    heading.focus();
    if (document.activeElement !== heading && tries > 0) requestAnimationFrame(() => focusHeading(tries - 1));
  };
  document.addEventListener("click", (event) => {
    const button = event.target.closest?.("#open-settings, #settings > .toggle-button");
    if (button && !isOpen()) opener = button;
  }, true);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && isOpen()) panel().querySelector(":scope > .toggle-button")?.click();
  });
  const opened = () => {
    const open = isOpen();
    if (open === wasOpen) return;
    wasOpen = open;
    if (open) {
      requestAnimationFrame(() => focusHeading(30));
      return;
    }
    const focused = document.activeElement;
    if (!focused || focused === document.body || panel().contains(focused)) {
      (opener?.isConnected ? opener : document.getElementById("open-settings"))?.focus();
    }
  };
  // Only the panel's own class is watched, once Gradio has drawn it: the chat redraws with
  // every streamed word.
  const drawn = new MutationObserver(() => {
    if (!panel()) return;
    drawn.disconnect();
    new MutationObserver(opened).observe(panel(), {attributes: true, attributeFilter: ["class"]});
  });
  drawn.observe(document.documentElement, {childList: true, subtree: true});
})();

// An example chosen from the keyboard is sent at once and leaves the empty chat, taking focus
// with it to the page's body; the question box is where a follow-up is typed.
// On a busy host the examples leave later than the next frame, and focus with them: it is put back
// once they have gone.
document.addEventListener("click", (event) => {
  if (event.detail !== 0 || !event.target.closest?.("#chat button.example")) return;
  const question = () => document.querySelector("#prompt textarea")?.focus();
  requestAnimationFrame(question);
  const chat = document.querySelector("#chat");
  const left = new MutationObserver(() => {
    if (chat.querySelector("button.example")) return;
    left.disconnect();
    question();
  });
  left.observe(chat, {childList: true, subtree: true});
  setTimeout(() => left.disconnect(), 30000);
}, true);

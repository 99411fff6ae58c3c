// Copy buttons: <button data-copy="ELEMENT_ID"> copies that element's text (a new key's secret, an
// invite link) to the clipboard and says so on the button.
"use strict";
document.addEventListener("click", async function (event) {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  if (!source || !navigator.clipboard) return;
  try {
    await navigator.clipboard.writeText(source.textContent.trim());
    button.textContent = "Copied";
  } catch (e) {
    button.textContent = "Select and copy it";
  }
});

// Tessera console: small enhancements only; every page works without this file.
"use strict";
document.documentElement.classList.add("js");
document.addEventListener("DOMContentLoaded", function () {
  // Copy and download the secret shown once.
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var field = document.getElementById(button.dataset.copy);
      navigator.clipboard.writeText(field.value).then(function () {
        button.textContent = "Copied";
      }, function () {
        field.select();
        document.execCommand("copy");
        button.textContent = "Copied";
      });
    });
  });
  document.querySelectorAll("[data-download]").forEach(function (button) {
    button.addEventListener("click", function () {
      var field = document.getElementById(button.dataset.download);
      var link = document.createElement("a");
      link.href = URL.createObjectURL(new Blob([field.value + "\n"], { type: "text/plain" }));
      link.download = button.dataset.filename || "token.txt";
      document.body.appendChild(link);
      link.click();
      link.remove();
    });
  });
  // "Done" stays disabled until "I have securely saved this token" is ticked (the form's
  // `required` does the same without JavaScript).
  var saved = document.getElementById("saved");
  var done = document.getElementById("done");
  if (saved && done) {
    var sync = function () { done.disabled = !saved.checked; };
    saved.addEventListener("change", sync);
    sync();
  }
});

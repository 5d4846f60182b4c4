// Review UI behaviour: click-to-reveal media and keyboard shortcuts. No inline script is used
// anywhere (the Content-Security-Policy forbids it).
(function () {
  "use strict";

  function toggleReveal(figure) {
    if (!figure) return;
    figure.classList.toggle("revealed");
    if (!figure.classList.contains("revealed")) figure.classList.remove("colour");
  }

  function allMedia() {
    return Array.prototype.slice.call(document.querySelectorAll("[data-media]"));
  }

  document.addEventListener("click", function (event) {
    var target = event.target.closest("[data-reveal]");
    if (!target) return;
    var figure = target.closest("[data-media]");
    if (figure && !figure.classList.contains("revealed")) {
      event.preventDefault();
      toggleReveal(figure);
    }
  });

  function choose(key) {
    var input = document.querySelector('#decision-form input[data-key="' + key + '"]');
    if (!input) return false;
    input.checked = true;
    input.dispatchEvent(new Event("change", { bubbles: true }));
    var form = document.getElementById("decision-form");
    form.classList.toggle("is-violating", input.value === "violating");
    if (input.value === "violating") {
      var select = document.getElementById("label-select");
      if (select) select.focus();
    } else if (input.value === "escalate") {
      form.querySelector("textarea").focus();
    } else {
      document.getElementById("decide-button").focus();
    }
    return true;
  }

  document.addEventListener("change", function (event) {
    var form = document.getElementById("decision-form");
    if (form && event.target.name === "verdict") {
      form.classList.toggle("is-violating", event.target.value === "violating");
    }
  });

  document.addEventListener("keydown", function (event) {
    var help = document.getElementById("shortcuts");
    if (event.key === "Escape") {
      if (help) help.hidden = true;
      if (document.activeElement) document.activeElement.blur();
      return;
    }
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      var decision = document.getElementById("decision-form");
      if (decision) {
        event.preventDefault();
        decision.requestSubmit();
      }
      return;
    }
    var tag = (event.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select" || event.target.isContentEditable) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    var key = event.key;
    if (key === "?") {
      if (help) help.hidden = !help.hidden;
    } else if (key === "r") {
      allMedia().forEach(toggleReveal);
    } else if (key === "g") {
      allMedia().forEach(function (f) {
        if (f.classList.contains("revealed")) f.classList.toggle("colour");
      });
    } else if (key === "c") {
      var claim = document.getElementById("claim-form");
      if (claim) claim.requestSubmit();
    } else if (key === "s") {
      var next = document.getElementById("next-form");
      if (next) next.requestSubmit();
    } else if ("vneux".indexOf(key) >= 0) {
      if (choose(key)) event.preventDefault();
    }
  });

  document.addEventListener("click", function (event) {
    var help = document.getElementById("shortcuts");
    if (help && !help.hidden && event.target === help) help.hidden = true;
  });
})();

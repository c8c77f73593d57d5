// "Add another EVSE" shows the next connector id: OCPP 1.6 numbers a charger's connectors
// 1..N without gaps. Left blank (or without JavaScript) the server gives that number too.
"use strict";
document.addEventListener("formset:added", (event) => {
  if (!event.detail || event.detail.formsetName !== "evses") {
    return;
  }
  const added = event.target.querySelector('input[name$="-connector_id"]');
  if (!added || added.value) {
    return;
  }
  const used = Array.from(document.querySelectorAll('#evses-group input[name$="-connector_id"]'))
    .filter((input) => input !== added && !input.name.includes("__prefix__"))
    .map((input) => Number.parseInt(input.value, 10))
    .filter((n) => Number.isInteger(n));
  added.value = String(Math.max(0, ...used) + 1);
});

// Sign-in: access key id, secret and bucket. Nothing is kept until a signed
// request with them succeeds (app.js); the secret is only ever used as an
// HMAC key in this page.

import { ApiError } from "../api.js";
import { field, h, notice } from "../ui.js";

export function signInView(main, onSignIn) {
  const keyId = field("Access key id", { name: "keyId", required: true, autocomplete: "username", spellcheck: "false" });
  const secret = field("Secret", { name: "secret", type: "password", required: true, autocomplete: "current-password" });
  const bucket = field("Bucket", { name: "bucket", required: true, spellcheck: "false" });
  const remember = h("input", { type: "checkbox", name: "remember" });
  const status = notice();
  const submit = h("button", { type: "submit" }, "Sign in");
  const form = h("form", { class: "panel", id: "signin", "aria-labelledby": "signin-title" },
    h("h2", { id: "signin-title" }, "Sign in"),
    h("p", {}, "Sign in with an access key livebucket knows. Requests are signed in this page; the secret is never sent."),
    keyId.wrap, secret.wrap, bucket.wrap,
    h("label", { class: "check" }, remember, " Remember until this tab closes (sessionStorage)"),
    submit, status);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    submit.disabled = true;
    status.show("Checking…");
    try {
      await onSignIn({
        keyId: keyId.input.value.trim(),
        secret: secret.input.value,
        bucket: bucket.input.value.trim(),
      }, remember.checked);
    } catch (err) {
      status.show(err instanceof ApiError ? `Sign-in refused: ${err.message}` : String(err), true);
      submit.disabled = false;
    }
  });
  main.append(form);
  return () => {};
}

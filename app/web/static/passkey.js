// Daylight staff: the passkey (WebAuthn) ceremonies of the login, account and one-time link pages.
//
// The only script the staff app serves, and only to those pages (their CSP allows it by nonce).
// It makes no request of its own: the server puts the ceremony's options in the form's
// data-passkey-options attribute, and this script puts the authenticator's answer in the form's
// passkey_response field and submits the form, which the server verifies.
(function () {
  "use strict";

  function bytesFromBase64url(text) {
    var base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (base64.length % 4) {
      base64 += "=";
    }
    var binary = atob(base64);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i += 1) {
      bytes[i] = binary.charCodeAt(i);
    }
    return bytes.buffer;
  }

  function base64urlFromBytes(buffer) {
    var bytes = new Uint8Array(buffer);
    var binary = "";
    for (var i = 0; i < bytes.length; i += 1) {
      binary += String.fromCharCode(bytes[i]);
    }
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function creationOptions(options) {
    options.challenge = bytesFromBase64url(options.challenge);
    options.user.id = bytesFromBase64url(options.user.id);
    options.excludeCredentials = (options.excludeCredentials || []).map(function (descriptor) {
      return { type: descriptor.type, id: bytesFromBase64url(descriptor.id) };
    });
    return options;
  }

  function requestOptions(options) {
    options.challenge = bytesFromBase64url(options.challenge);
    options.allowCredentials = (options.allowCredentials || []).map(function (descriptor) {
      return { type: descriptor.type, id: bytesFromBase64url(descriptor.id) };
    });
    return options;
  }

  function credentialJSON(credential) {
    var response = credential.response;
    var json = {
      id: credential.id,
      rawId: base64urlFromBytes(credential.rawId),
      type: credential.type,
      clientExtensionResults: credential.getClientExtensionResults(),
      response: { clientDataJSON: base64urlFromBytes(response.clientDataJSON) }
    };
    if (response.attestationObject) {
      json.response.attestationObject = base64urlFromBytes(response.attestationObject);
      json.response.transports = response.getTransports ? response.getTransports() : [];
    } else {
      json.response.authenticatorData = base64urlFromBytes(response.authenticatorData);
      json.response.signature = base64urlFromBytes(response.signature);
      if (response.userHandle) {
        json.response.userHandle = base64urlFromBytes(response.userHandle);
      }
    }
    return json;
  }

  function run(form, status) {
    if (!form.reportValidity()) {
      return;
    }
    var options = JSON.parse(form.getAttribute("data-passkey-options"));
    var creating = form.getAttribute("data-passkey") === "create";
    var ceremony = creating
      ? navigator.credentials.create({ publicKey: creationOptions(options) })
      : navigator.credentials.get({ publicKey: requestOptions(options) });
    status.textContent = "Waiting for your passkey…";
    ceremony.then(
      function (credential) {
        form.querySelector("input[name=passkey_response]").value = JSON.stringify(credentialJSON(credential));
        status.textContent = "";
        form.submit();
      },
      function () {
        status.textContent = "The passkey was not used. Try again, or use another one.";
      }
    );
  }

  function start() {
    if (!window.PublicKeyCredential) {
      return;
    }
    var forms = document.querySelectorAll("form[data-passkey]");
    Array.prototype.forEach.call(forms, function (form) {
      var button = form.querySelector("[data-passkey-start]");
      var status = form.querySelector("[data-passkey-status]");
      if (!button || !status) {
        return;
      }
      button.hidden = false;
      button.addEventListener("click", function (event) {
        event.preventDefault();
        run(form, status);
      });
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();

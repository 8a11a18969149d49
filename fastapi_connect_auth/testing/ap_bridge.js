// The test kit's stand-in for Atlassian's all.js, the AP bridge of a Connect app's iframe. FOR TESTS ONLY.
//
// fastapi_connect_auth.testing.APBridge serves this file in a Playwright browser in place of
// https://connect-cdn.atl-paas.net/all.js, and exposes on the page the function it calls: the test's fake
// product answers it. AP.context.getToken() resolves to a fresh context token for the bridge's tenant and
// user (HS256 with the tenant's shared secret, qsh "context-qsh", as the product's); getContext() to the
// context the test gave. It never talks to a product and holds no secret: never serve it to real users.
(function () {
  "use strict";

  var ask = window.__fastapiConnectAuthAP; // exposed by APBridge.install(page)

  function call(name, callback) {
    var answer =
      typeof ask === "function"
        ? Promise.resolve(ask(name))
        : Promise.reject(new Error("The test kit's AP bridge is not installed on this page: APBridge.install(page)."));
    if (typeof callback === "function") {
      answer.then(callback);
    }
    return answer;
  }

  function nothing() {} // what the page asks of the host frame's layout: there is no host frame here

  window.AP = {
    context: {
      getToken: function (callback) {
        return call("token", callback);
      },
      getContext: function (callback) {
        return call("context", callback);
      },
    },
    resize: nothing,
    sizeToParent: nothing,
  };
})();

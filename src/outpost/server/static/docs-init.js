// Starts Swagger UI on the API description that this Outpost serves.
// A separate file, not an inline script, so the page's Content-Security-Policy
// can forbid inline scripts.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
  });
});

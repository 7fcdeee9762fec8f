// Swagger UI over the gateway's own OpenAPI document; nothing is fetched from elsewhere
// (no validator badge, no remote definitions).
window.addEventListener("load", function () {
  var target = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: target.getAttribute("data-url"),
    dom_id: "#swagger-ui",
    validatorUrl: null,
    deepLinking: true,
    tryItOutEnabled: false,
  });
});

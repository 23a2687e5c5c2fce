// The explorer's entry point: which page renders which path.

import * as block from "./pages/block.js";
import * as labels from "./pages/labels.js";
import * as network from "./pages/network.js";
import * as resolve from "./pages/resolve.js";
import * as token from "./pages/token.js";
import { setRoutes, start } from "./router.js";

setRoutes([
  { pattern: /^\/$/, section: "resolve", page: (view, ctx) => resolve.render(view, { ...ctx, params: [""] }) },
  { pattern: /^\/resolve\/(.*)$/, section: "resolve", page: resolve.render },
  { pattern: /^\/token\/([^/]+)$/, section: "resolve", page: token.render },
  { pattern: /^\/block\/(\d+)$/, section: "network", page: block.render },
  { pattern: /^\/network$/, section: "network", page: network.render },
  { pattern: /^\/labels$/, section: "labels", page: labels.render },
]);
start();

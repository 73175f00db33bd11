// The explorer page: a hash router over five views.
import { galleryView } from "./views/gallery.js";
import { detailView } from "./views/detail.js";
import { compareView } from "./views/compare.js";
import { layersView } from "./views/layers.js";
import { tablesView } from "./views/tables.js";
import { el, getProfile, parseHash } from "./util.js";

const VIEWS = { gallery: galleryView, image: detailView, compare: compareView,
                layers: layersView, tables: tablesView };

let cleanup = null;
async function route() {
  const { view, id, query } = parseHash();
  const main = document.getElementById("view");
  for (const link of document.querySelectorAll("header nav a")) {
    link.classList.toggle("active", link.getAttribute("href") === `#/${view}`);
  }
  if (cleanup) cleanup();
  cleanup = null;
  delete main.dataset.ready;  // a view marks itself ready once its data are shown
  try {
    const p = await getProfile();
    document.getElementById("profile-name").textContent = `profile ${p.profile}`;
    main.replaceChildren();
    cleanup = (await (VIEWS[view] || galleryView)(main, { id, query, profile: p })) || null;
  } catch (error) {  // a dead end (an unknown image, model or table) has a way back
    const back = el("a", { href: "#", id: "back-previous", onclick: (event) => { event.preventDefault(); history.back(); } },
                    "back to the previous page");
    main.replaceChildren(el("p", { class: "error", id: "view-error" }, String(error.message || error)),
      el("p", {}, el("a", { href: "#/gallery", id: "back-gallery" }, "← the gallery"), " · ", back));
  }
}

window.addEventListener("hashchange", route);
route();

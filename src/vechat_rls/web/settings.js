// settings.js — applying the user's settings (theme, font size) to the page.

import { api } from "./http.js";

export async function applySettings() {
  try {
    const settings = await api("GET", "/settings");
    if (!settings) return;
    const theme = settings.theme === "auto"
      ? (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light")
      : settings.theme;
    if (theme) document.documentElement.dataset.theme = theme;
    if (settings.font_size) document.documentElement.dataset.fontSize = settings.font_size;
  } catch {
    // settings are cosmetic here; the defaults stand
  }
}

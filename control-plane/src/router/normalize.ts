// The form routing patterns are written against: lower case, no accents or
// other diacritics, every run of non-alphanumeric characters (punctuation,
// ¿¡, emoji) one space, no leading or trailing space. So "¡ENCIENDE la luz
// del Salón!" and "enciende la luz del salon" route the same way.
export function normalize(text: string): string {
  return text
    .normalize("NFD")
    .replace(/\p{M}+/gu, "") // combining marks: the accents NFD split off
    .toLowerCase()
    .replace(/[^\p{L}\p{N}%]+/gu, " ")
    .trim();
}

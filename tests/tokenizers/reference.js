// The reference ids and texts for smoe's tokenizer checks, from the Hugging Face
// `tokenizers` library (its Node binding) and js-tiktoken.
//
//   node reference.js hf TOKENIZER.json STRINGS.jsonl OUT.jsonl
//   node reference.js tiktoken RANKS.tiktoken STRINGS.jsonl OUT.jsonl
//
// STRINGS.jsonl: {"text": ...} per line. OUT.jsonl: per line {"ids": encode with
// special tokens, "plain": without, "decoded": decode(ids, false),
// "decoded_skip": decode(ids, true)}; for tiktoken only "ids" and "decoded".
'use strict';
const fs = require('fs');
const path = require('path');

const [kind, file, stringsPath, outPath] = process.argv.slice(2);
const texts = fs.readFileSync(stringsPath, 'utf8').split('\n').filter((l) => l.length).map((l) => JSON.parse(l).text);

async function hf() {
  const { Tokenizer } = require('tokenizers');
  const tok = Tokenizer.fromFile(file);
  const out = [];
  for (let i = 0; i < texts.length; i += 256) {
    const batch = texts.slice(i, i + 256);
    const withSpecial = await tok.encodeBatch(batch, { addSpecialTokens: true });
    const plain = await tok.encodeBatch(batch, { addSpecialTokens: false });
    for (let k = 0; k < batch.length; ++k) {
      const ids = withSpecial[k].getIds();
      out.push(JSON.stringify({
        ids, plain: plain[k].getIds(),
        decoded: await tok.decode(ids, false), decoded_skip: await tok.decode(ids, true),
      }));
    }
  }
  fs.writeFileSync(outPath, out.join('\n') + '\n');
}

// Kimi-K2's split pattern in JavaScript's `u` syntax (Node 18 and later): \p{Han}
// is Script=Han, the class intersection [A&&[^\p{Han}]] a lookahead
// (?:(?!\p{sc=Han})[A]), (?i:'s|...) spelled out, and \s the White_Space set of
// Rust and Oniguruma (JavaScript's adds U+FEFF, lacks U+0085).
const WS = '[\\t\\n\\v\\f\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';
const NWS = '[^\\t\\n\\v\\f\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';
const CONTRACTION = "(?:'(?:[sS\\u017f]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD]))";
const UPPER = '(?:(?!\\p{sc=Han})[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}])';
const LOWER = '(?:(?!\\p{sc=Han})[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}])';
const KIMI = [
  '[\\p{sc=Han}]+',
  `[^\\r\\n\\p{L}\\p{N}]?${UPPER}*${LOWER}+${CONTRACTION}?`,
  `[^\\r\\n\\p{L}\\p{N}]?${UPPER}+${LOWER}*${CONTRACTION}?`,
  '\\p{N}{1,3}',
  ` ?[^\\t\\n\\v\\f\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\p{L}\\p{N}]+[\\r\\n]*`,
  `${WS}*[\\r\\n]+`,
  `${WS}+(?!${NWS})`,
  `${WS}+`,
].join('|');

// Kimi-K2's tokenizer on a tiktoken rank file: the pattern above splits, js-tiktoken
// merges each piece (its own pattern set to take a piece whole); special tokens as
// tokenization_kimi.py names them (258 after the ranks, from tokenizer_config.json).
function tiktoken() {
  const { Tiktoken } = require('js-tiktoken/lite');
  const lines = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.length);
  const byRank = [];
  for (const l of lines) {
    const [b64, rank] = l.split(' ');
    byRank[Number(rank)] = b64;
  }
  const base = byRank.length;
  const specials = {};
  const configPath = path.join(path.dirname(file), 'tokenizer_config.json');
  const names = fs.existsSync(configPath) ? JSON.parse(fs.readFileSync(configPath, 'utf8')).added_tokens_decoder || {} : {};
  for (let id = base; id < base + 258; ++id) specials[names[id] ? names[id].content : `<|reserved_token_${id}|>`] = id;
  const enc = new Tiktoken({ pat_str: '[\\s\\S]+', special_tokens: {}, bpe_ranks: '! 0 ' + byRank.join(' ') });
  const split = new RegExp(KIMI, 'gu');
  const specialNames = Object.keys(specials).sort((a, b) => specials[a] - specials[b]);
  const decoder = new TextDecoder('utf-8', { ignoreBOM: true });  // keep a leading U+FEFF, as Python's decode does
  const pieceIds = (s) => {
    const ids = [];
    for (const m of s.matchAll(split)) ids.push(...enc.encode(m[0]));
    return ids;
  };
  const encodeChunk = (s) => {
    const ids = [];
    let start = 0;
    for (let i = 0; i < s.length; ++i) {
      const name = specialNames.find((n) => s.startsWith(n, i));
      if (name === undefined) continue;
      ids.push(...pieceIds(s.slice(start, i)), specials[name]);
      start = i + name.length;
      i = start - 1;
    }
    return ids.concat(pieceIds(s.slice(start)));
  };
  const isspace = (c) => /^[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]$/u.test(c);
  // tokenization_kimi.py: 400,000-code-point chunks, runs of one class cut at 25,000.
  const encode = (text) => {
    const chars = Array.from(text);
    const ids = [];
    for (let c = 0; c < chars.length || (c === 0 && chars.length === 0); c += 400000) {
      const s = chars.slice(c, c + 400000);
      let runLen = 0, runSpace = s.length ? isspace(s[0]) : false, sliceStart = 0;
      for (let i = 0; i < s.length; ++i) {
        const now = isspace(s[i]);
        if (runSpace !== now) { runLen = 1; runSpace = now; continue; }
        if (++runLen > 25000) { ids.push(...encodeChunk(s.slice(sliceStart, i).join(''))); sliceStart = i; runLen = 1; }
      }
      ids.push(...encodeChunk(s.slice(sliceStart).join('')));
      if (chars.length === 0) break;
    }
    return ids;
  };
  const bytesOf = (id) => (id < base ? Buffer.from(byRank[id], 'base64') : Buffer.from(specialNames[id - base]));
  const out = texts.map((t) => {
    const ids = encode(t);
    return JSON.stringify({ ids, decoded: decoder.decode(Buffer.concat(ids.map(bytesOf))) });
  });
  fs.writeFileSync(outPath, out.join('\n') + '\n');
}

(kind === 'hf' ? hf() : Promise.resolve(tiktoken())).catch((e) => {
  console.error(e);
  process.exit(1);
});

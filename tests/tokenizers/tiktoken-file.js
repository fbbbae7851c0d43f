// Writes one of js-tiktoken's rank files (cl100k_base, o200k_base, ...) as a
// tiktoken.model ("<base64> <rank>" per line), as Kimi-K2 ships its ranks.
//   node tiktoken-file.js cl100k_base OUT/tiktoken.model
'use strict';
const fs = require('fs');
const [name, out] = process.argv.slice(2);
const ranks = require(`js-tiktoken/ranks/${name}`);
const lines = [];
for (const line of ranks.bpe_ranks.split('\n').filter(Boolean)) {
  const [, offset, ...tokens] = line.split(' ');
  tokens.forEach((t, i) => lines.push(`${t} ${Number(offset) + i}`));
}
fs.writeFileSync(out, lines.join('\n') + '\n');

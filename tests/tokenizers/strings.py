"""Hostile and real strings for the tokenizer checks: deterministic for a seed.

    python3 strings.py OUT.jsonl [--count N] [--seed S] [--special TOKEN ...]

Writes N strings ({"text": ...} per line): fragments that break tokenizers
(contractions in any case, runs of spaces and newlines, CR LF, digit runs, CJK,
Indic with combining marks, emoji sequences, U+180E, U+0085, U+2028, zero-width
characters, the tokenizer's special tokens inside text, very long words, text
that normalization changes), glued at random, then real multilingual text.
"""
import argparse
import json
import random

CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ve", "'M", "'LL", "'D", "'ſ", "'Re"]
WORDS = ["Hello", "world", "don", "THEY", "we", "It", "I", "you", "O'Neil", "rock'n'roll", "naïve", "café", "Straße",
         "ΑΘΗΝΑ", "ΟΔΟΣ", "ΣΟΦΟΣ Σ", "Σίσυφος", "ὀδυσσεύς", "İstanbul", "ǅemal", "Ⅻ", "ﬁnance", "Kelvin", "Å", "Ωhm", "x²", "H₂O",
         "München", "Привет", "мир", "Ελλάδα", "Ünïcödé", "e\u0301", "a\u0308\u0301", "A\u030a", "\u212b", "\u1e9b\u0323"]
SPACES = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", "\r", " \n ", "\n \n", "\t\t \n", "\u00a0", "\u3000", "\u2003",
          "\u0085", "\u2028", "\u2029", "\u180e", "\u200b", "\u200c", "\u200d", "\ufeff", "\u2060", "\x0b", "\x0c",
          "\x1c", "\x1f", " " * 17, "\n" * 9, "\r\n" * 4]
DIGITS = ["0", "7", "42", "123", "1234", "12345678901234567890", "3.14159", "1,000,000", "٣٤٥", "१२३", "１２３",
          "²³", "½", "Ⅳ", "①②", "𝟙𝟚𝟛", "0x1F", "-17", "+49 30 1234567"]
CJK = ["你好世界", "中华人民共和国", "漢字", "こんにちは", "カタカナ", "ひらがなとカタカナ", "東京タワー", "안녕하세요",
       "한국어", "㐀㐁", "𠀀𠀁", "〇", "々", "ｶﾀｶﾅ", "，。！？", "「引用」"]
INDIC = ["नमस्ते", "हिन्दी", "क्षत्रिय", "தமிழ்", "ক্ষ", "বাংলা", "ગુજરાતી", "ਪੰਜਾਬੀ", "తెలుగు", "ಕನ್ನಡ", "മലയാളം", "සිංහල",
         "ภาษาไทย", "ພາສາລາວ", "བོད་སྐད", "ဗမာ", "ខ្មែរ", "ḍḥṃ", "\u0915\u093c"]
EMOJI = ["👍", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇩🇪", "🇯🇵🇺🇸", "1️⃣", "❤️", "🧑🏿‍🚀", "😀😃😄", "🤖", "☕", "✌🏻",
         "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "©", "™", "∑∫√", "→←", "♠♣", "€$£¥", "°C"]
RTL = ["مرحبا بالعالم", "العربية", "שלום עולם", "עברית", "فارسی", "اردو", "\u200fRTL\u200f", "\u202eevil\u202c"]
PUNCT = [".", ",", "!", "?", "...", "!!!", "?!", "--", "—", "–", "(", ")", "[", "]", "{", "}", "<", ">", "/", "\\",
         "@", "#", "$", "%", "^", "&", "*", "_", "=", "+", "|", "~", "`", '"', "'", "''", "\"'", ":", ";", "<<>>",
         "</s>", "<s", "s>", "<|", "|>", "<｜", "▁", "▁▁", "Ġ", "Ċ", "<0x41>", "[BOS]", "[EOS", "\\n", "\x00", "\x7f"]
CODE = ["def f(x):\n    return x**2\n", "for (int i = 0; i < n; ++i) {", "if x != None and y >= 3:", "https://example.org/a?b=c&d=e",
        "user@example.com", "#include <stdio.h>", "SELECT * FROM t WHERE id=1;", "λx.x", "a_b_c", "CamelCaseWord",
        "snake_case_word", "ALLCAPS", "mIxEd CaSe", "i'M", "yOu'Ll", "wE'vE"]

# Characters assigned after Unicode 9 (the library's normalization tables) or
# Unicode 14 (Oniguruma 6.9.8's): where these differ, smoe (ICU 72, Unicode 15)
# may legitimately differ from the library. Listed in OUT.newer.json.
NEWER = ["\U0001FAE8", "\u0CF3", "\U00031350", "\U00011F00", "\U0001E4D0", "\u0860", "\U0001F9D0",
         "\U00011D31\U00011D42\U00011D44", "\u08D3", "\u1ABF", "\U0001E8D0a"]

# Real text: Article 1 of the Universal Declaration of Human Rights, and more.
REAL = [
    "All human beings are born free and equal in dignity and rights. They are endowed with reason and conscience and should act towards one another in a spirit of brotherhood.",
    "Alle Menschen sind frei und gleich an Würde und Rechten geboren. Sie sind mit Vernunft und Gewissen begabt und sollen einander im Geist der Brüderlichkeit begegnen.",
    "Tous les êtres humains naissent libres et égaux en dignité et en droits. Ils sont doués de raison et de conscience et doivent agir les uns envers les autres dans un esprit de fraternité.",
    "Todos los seres humanos nacen libres e iguales en dignidad y derechos y, dotados como están de razón y conciencia, deben comportarse fraternalmente los unos con los otros.",
    "Tutti gli esseri umani nascono liberi ed eguali in dignità e diritti. Essi sono dotati di ragione e di coscienza e devono agire gli uni verso gli altri in spirito di fratellanza.",
    "Все люди рождаются свободными и равными в своем достоинстве и правах. Они наделены разумом и совестью и должны поступать в отношении друг друга в духе братства.",
    "人人生而自由，在尊严和权利上一律平等。他们赋有理性和良心，并应以兄弟关系的精神相对待。",
    "すべての人間は、生まれながらにして自由であり、かつ、尊厳と権利とについて平等である。人間は、理性と良心とを授けられており、互いに同胞の精神をもって行動しなければならない。",
    "모든 인간은 태어날 때부터 자유로우며 그 존엄과 권리에 있어 동등하다. 인간은 천부적으로 이성과 양심을 부여받았으며 서로 형제애의 정신으로 행동하여야 한다.",
    "يولد جميع الناس أحرارًا متساوين في الكرامة والحقوق. وقد وهبوا عقلاً وضميرًا وعليهم أن يعامل بعضهم بعضًا بروح الإخاء.",
    "सभी मनुष्यों को गौरव और अधिकारों के मामले में जन्मजात स्वतन्त्रता और समानता प्राप्त है। उन्हें बुद्धि और अन्तरात्मा की देन प्राप्त है और परस्पर उन्हें भाईचारे के भाव से बर्ताव करना चाहिए।",
    "Όλοι οι άνθρωποι γεννιούνται ελεύθεροι και ίσοι στην αξιοπρέπεια και τα δικαιώματα. Είναι προικισμένοι με λογική και συνείδηση, και οφείλουν να συμπεριφέρονται μεταξύ τους με πνεύμα αδελφοσύνης.",
    "כל בני האדם נולדו בני חורין ושווים בערכם ובזכויותיהם. כולם חוננו בתבונה ובמצפון, לפיכך חובה עליהם לנהוג איש ברעהו ברוח של אחוה.",
    "Mọi người sinh ra đều được tự do và bình đẳng về nhân phẩm và quyền lợi. Mọi con người đều được tạo hóa ban cho lý trí và lương tâm và cần phải đối xử với nhau trong tình bằng hữu.",
    "มนุษย์ทั้งหลายเกิดมามีอิสระและเสมอภาคกันในเกียรติศักดิ์และสิทธิ ต่างมีเหตุผลและมโนธรรม และควรปฏิบัติต่อกันด้วยเจตนารมณ์แห่งภราดรภาพ",
    "Tüm insanlar hür, haysiyet ve haklar bakımından eşit doğarlar. Akıl ve vicdana sahiptirler ve birbirlerine karşı kardeşlik zihniyeti ile hareket etmelidirler.",
    "Wszyscy ludzie rodzą się wolni i równi pod względem swej godności i swych praw. Są oni obdarzeni rozumem i sumieniem i powinni postępować wobec innych w duchu braterstwa.",
    "எல்லா மனிதர்களும் சுதந்திரமாகவே பிறக்கின்றனர்; அவர்கள் மதிப்பிலும், உரிமைகளிலும் சமமானவர்கள்.",
    "The quick brown fox jumps over the lazy dog's back; it's 3:45pm, isn't it? We'll see—\"maybe\" they'd say.\n\nNew paragraph.\r\nWindows line.",
    "Kimi-K2 和 DeepSeek-V3 都是混合专家模型（MoE），它们有 1T 和 671B 参数。",
]


def fragment(rng, specials, newer=True):
    pools = [CONTRACTIONS, WORDS, SPACES, DIGITS, CJK, INDIC, EMOJI, RTL, PUNCT, CODE] + ([NEWER] if newer else [])
    if specials:
        pools.append(specials)
    pool = rng.choice(pools)
    piece = rng.choice(pool)
    if rng.random() < 0.1:
        piece = piece.upper() if rng.random() < 0.5 else piece.lower()
    if rng.random() < 0.05:
        piece = piece * rng.randint(2, 12)
    return piece


def long_strings(specials, short_pieces):
    if short_pieces:  # long texts that split into short pieces (for references that merge in quadratic time)
        return ["a1" * 13000, "ab, " * 7000 + "x" * 100, "日本。" * 300, "word " * 2000, "1" * 3000]
    out = ["a" * 5000, "Z" * 30000, "supercalifragilistic" * 300, "1" * 3000, " " * 30001, "\n" * 5000,
           "x " * 4000, "日本" * 2000, "👍" * 1000, "é" * 3000, "e\u0301" * 2000, "-" * 26000 + "a" * 26000,
           ("word " * 200 + "\n") * 20]
    if specials:
        out.append((specials[0] + "text ") * 200)
        out.append("".join(specials))
        out.append(" ".join(specials))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--count", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--special", nargs="*", default=[])
    ap.add_argument("--short-pieces", action="store_true", help="no long text that is one piece")
    ap.add_argument("--no-newer", action="store_true", help="no character newer than Unicode 9")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    texts = ["", " ", "\n", "a", "'s", "I'M", " 's"] + long_strings(a.special, a.short_pieces) + REAL
    for s in a.special:
        texts += [s, " " + s, s + " ", "x" + s + "y", " " + s + " x", s + s, s[:-1], s[1:]]
    while len(texts) < a.count:
        n = rng.randint(1, 8)
        texts.append("".join(fragment(rng, a.special, not a.no_newer) for _ in range(n)))
    with open(a.out + ".newer.json", "w", encoding="utf-8") as f:
        json.dump(sorted({c for piece in NEWER for c in piece if ord(c) > 0x7f}), f)
    with open(a.out, "w", encoding="utf-8") as f:
        for t in texts[: max(a.count, len(texts))]:
            f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()

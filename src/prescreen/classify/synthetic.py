# ruff: noqa: RUF001 (multilingual templates: Cyrillic and Greek letters are meant)
"""Generated training negatives: reporting, policy, research and counter-speech about terrorism.

The shared corpora have pro-ISIS tweets as the only texts about terrorism, so a model trained on
them alone learns "mentions ISIS, Syria or an attack" and flags the news. These templates put the
same topic words (group names, places, attacks, recruitment, martyrdom) into the registers of
journalism, policy, scholarship and counter-speech, labelled negative for both heads.

They are generated from slot lists, not copied from anywhere, and are independent of the
hand-written validation set `data/hard_negatives.csv` (which is never used for training); the
training script measures and reports the largest MinHash similarity between the two sets.
"""

from __future__ import annotations

import random

GROUPS = [
    "the Islamic State", "ISIS", "Islamic State", "IS", "Daesh", "ISIL", "al-Qaeda",
    "al-Shabaab", "Boko Haram", "the Taliban", "Hayat Tahrir al-Sham", "ISIS-K",
    "Islamic State West Africa Province", "a neo-Nazi cell", "a far-right militia",
    "an extreme right-wing group", "jihadist militants", "the militant group", "the terror group",
    "the jihadist group", "the extremist organisation", "insurgents", "the group's affiliate",
]  # fmt: skip
PLACES = [
    "Mosul", "Raqqa", "Deir ez-Zor", "Aleppo", "Idlib", "Baghdad", "Kirkuk", "Fallujah",
    "Palmyra", "Sirte", "Kabul", "Jalalabad", "Peshawar", "Quetta", "Lahore", "Mogadishu",
    "Maiduguri", "Cabo Delgado", "Niamey", "Bamako", "Ouagadougou", "Marawi", "Jakarta",
    "Paris", "Nice", "Brussels", "London", "Manchester", "Berlin", "Vienna", "Madrid",
    "Barcelona", "Stockholm", "Istanbul", "Ankara", "Moscow", "Christchurch", "Colombo",
    "New York", "Toronto", "Sinai", "the Sahel", "north-east Syria", "western Iraq",
]  # fmt: skip
EVENTS = [
    "a suicide bombing", "a car bomb", "a knife attack", "a shooting", "a vehicle-ramming attack",
    "an ambush on soldiers", "an attack on a checkpoint", "the bombing of a mosque",
    "an attack on a church", "a hostage-taking", "the execution of prisoners",
    "a drone strike", "a raid", "an attack on a school", "a prison break", "a mass shooting",
    "the kidnapping of aid workers", "an explosion at a market", "a rocket attack",
]  # fmt: skip
SOURCES = [
    "Police", "Officials", "Prosecutors", "The interior ministry", "A government spokesperson",
    "Security sources", "The army", "Local authorities", "Investigators", "The coalition",
    "Witnesses", "Hospital staff", "A regional governor", "The defence ministry", "Analysts",
    "Monitoring groups", "Aid agencies", "The United Nations", "Human rights groups",
]  # fmt: skip
SAYS = [
    "said", "said on Monday", "said late on Tuesday", "told reporters", "confirmed",
    "reported", "said in a statement", "told a news conference", "announced", "warned",
]  # fmt: skip
NUMBERS = ["two", "three", "five", "seven", "nine", "12", "17", "23", "31", "40", "dozens of",
           "more than 50", "at least 60", "hundreds of"]  # fmt: skip
PEOPLE = ["civilians", "soldiers", "police officers", "worshippers", "students", "villagers",
          "passengers", "shoppers", "children", "militants", "fighters", "suspects"]  # fmt: skip
COURTS = ["A court", "A judge", "The jury", "The high court", "A military court",
          "The appeals court", "A special terrorism court"]  # fmt: skip
PERSONS = ["a 22-year-old man", "a teenager", "a woman", "a former soldier", "a student",
           "a father of three", "a returnee from Syria", "a convert", "a 30-year-old",
           "two brothers", "a local imam", "a nurse"]  # fmt: skip
OFFENCES = [
    "preparing acts of terrorism", "membership of a proscribed organisation",
    "disseminating terrorist publications", "funding terrorism", "encouraging terrorism",
    "travelling to join a terrorist group", "possessing bomb-making manuals",
    "recruiting for the group online", "collecting information useful to a terrorist",
]  # fmt: skip

NEWS = [
    "{source} {says} {n} {people} were killed in {event} in {place}.",
    "{source} {says} {group} carried out {event} in {place}, killing {n} {people}.",
    "{group} claimed responsibility for {event} in {place}, {source_l} {says}.",
    "{source} {says} the claim by {group} could not be independently verified.",
    "{court} convicted {person} of {offence} on {day}.",
    "{person} appeared in court charged with {offence}, {source_l} {says}.",
    "{person} was arrested in {place} on suspicion of {offence}.",
    "{source} {says} forces had retaken {place} from {group} after weeks of fighting.",
    "Residents of {place} described life under {group}: executions, curfews and fear.",
    "{n} {people} were wounded in {event} near {place} on {day}, according to {source_l}.",
    "{source} {says} {group} had used social media to recruit young people in {place}.",
    "The trial of {person} accused of {offence} opened in {place} on {day}.",
    "{source} {says} a video released by {group} appeared to show {event}; it has not been "
    "verified.",
    "Families of the victims of {event} in {place} gathered for a memorial on {day}.",
    "{source} {says} the attacker had pledged allegiance to {group} in an online post.",
    "Security was stepped up in {place} after {group} called on supporters to carry out attacks.",
    "LIVE: {event} in {place} - what we know so far",
    "Breaking: {source_l} {says} {event} has taken place in {place}; the area has been sealed off.",
    "{group} fighters overran an army post in {place}, {source_l} {says}, citing local residents.",
    "A spokesman for {group} threatened new attacks, {source_l} {says}, in an audio message.",
    "Thousands fled {place} as {group} advanced, {source_l} {says}.",
    "{source} {says} {n} suspected members of {group} had been detained in raids across {place}.",
    "Survivors of {event} in {place} told the inquiry that warnings had been ignored.",
    "The leader of {group} was killed in {event}, {source_l} {says}.",
]  # fmt: skip
CONFLICT = [
    "{side} {says} it had pushed {group} out of several villages near {place}.",
    "Fighting between {side_l} and {group} continued around {place} for a third day, "
    "{source_l} {says}.",
    "Airstrikes by {air} hit positions held by {group} near {place}, according to {source_l}.",
    "{n} {people} were reported killed in clashes between {side_l} and {group} near {place}.",
    "{source} {says} {group} used car bombs and snipers to slow the advance on {place}.",
    "Aid agencies say thousands of families have fled {place} as the offensive against "
    "{group} intensifies.",
    "Monitors said {group} had lost control of the road linking {place} and {place2}.",
    "{side} announced the capture of {place} from {group}; the claim could not be verified.",
    "Map: who controls what around {place} after the latest offensive against {group}",
    "{source} {says} a senior commander of {group} was killed in a strike near {place}.",
    "Civilians trapped in {place} describe shortages of food and medicine as {group} and "
    "{side_l} fight for the city.",
    "The offensive on {place} is expected to take weeks, {source_l} {says}, warning of "
    "booby traps left by {group}.",
]
SIDES = [
    "Iraqi forces",
    "The Syrian army",
    "Kurdish fighters",
    "The Peshmerga",
    "The SDF",
    "Turkish-backed rebels",
    "Government troops",
    "The Afghan army",
    "Nigerian troops",
    "Somali forces",
    "Coalition-backed forces",
    "Rebel groups",
]
AIR = [
    "the US-led coalition",
    "Russian jets",
    "the Syrian air force",
    "Iraqi aircraft",
    "Turkish drones",
    "Jordanian jets",
]
POLICY = [
    "The proposed law would make it an offence to {act}, critics say it is too broad.",
    "Lawmakers in {place} debated new powers to {power} after {event}.",
    "Should platforms be fined for failing to {platform}? The committee is divided.",
    "The regulator says platforms must {platform}, while protecting journalism and research.",
    "Civil liberties groups warn that plans to {power} could be misused against activists.",
    "The government's strategy to counter {group} focuses on prevention and community trust.",
    "Policy makers should fund exit programmes for people leaving {group}, the report argues.",
    "Removing {content} is necessary, but documentation of abuses must be preserved as evidence.",
    "Counter-terrorism measures must respect human rights, the minister told parliament in "
    "{place}.",
    "The inquiry asked why warnings about {person} were not acted on before {event}.",
]  # fmt: skip
RESEARCH = [
    "We analyse {k} posts by supporters of {group} to understand how {content} spreads.",
    "This study examines recruitment by {group} in {place} using interviews with former members.",
    "Our findings suggest that {content} reaches few users, mostly those who seek it out.",
    "The paper compares propaganda by {group} with far-right messaging and finds shared themes "
    "of grievance.",
    "We evaluate classifiers for {content} and find high error rates on news coverage.",
    "Data from {k} court cases show that most people convicted of {offence} were under 30.",
    "The author traces how {group} portrayed martyrdom in its magazines and why it appealed to "
    "some recruits.",
    "Using network analysis, we show how accounts supporting {group} regrouped after bans.",
]  # fmt: skip
COUNTER = [
    "{group} does not speak for us. We stand with the victims of {event} in {place}.",
    "Please don't share the video of {event}. That's exactly what {group} wants.",
    "There is nothing brave about {event}. The victims were ordinary people in {place}.",
    "If someone online tells you to join {group}, talk to a friend, a teacher or a helpline.",
    "Calling the killers martyrs insults every family grieving after {event}.",
    "Our community held a vigil for the victims of {event}; hate will not win in {place}.",
    "I left {group} after two years. They promised brotherhood and gave me nothing but "
    "violence.",
    "Report posts praising {event}, don't argue with them. Starve the extremists of attention.",
    "Muslims, Christians and Jews in {place} stand together against {group}.",
    "Extremists twist religion to justify murder. Scholars have rejected {group} again and "
    "again.",
]  # fmt: skip
ACTS = ["glorify terrorism online", "view terrorist material", "join a banned group",
        "share extremist videos", "fund armed groups abroad"]  # fmt: skip
POWERS = ["monitor encrypted messages", "ban extremist organisations", "revoke citizenship",
          "detain suspects without charge", "block websites"]  # fmt: skip
PLATFORMS = ["remove terrorist content within an hour", "report extremist accounts",
             "publish transparency reports", "share hashes of propaganda"]  # fmt: skip
CONTENTS = ["terrorist propaganda", "extremist videos", "jihadist content", "hate speech",
            "far-right propaganda", "recruitment material"]  # fmt: skip
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]

# A few registers in the other languages the hard-negative set covers.
OTHER_LANGUAGES = [
    "{group_fr} a revendiqué l'attaque de {place}, selon les autorités, qui n'ont pas confirmé.",
    "Le parquet a ouvert une enquête après {event_fr} à {place}.",
    "Nous condamnons fermement l'attentat de {place}. Pensées pour les victimes.",
    "Un tribunal a condamné un homme pour apologie du terrorisme après des messages en ligne.",
    "Die Polizei nahm in {place} einen Mann fest, der einen Anschlag geplant haben soll.",
    "Nach dem Anschlag in {place} trauert die Stadt um die Opfer.",
    "La policía detuvo en {place} a un hombre acusado de difundir propaganda yihadista.",
    "Condenamos el atentado de {place} y acompañamos a las familias de las víctimas.",
    "أعلنت السلطات اعتقال مشتبه بهم في {place_ar} بتهمة الانتماء إلى تنظيم إرهابي.",
    "ندين الهجوم الإرهابي ونقف مع عائلات الضحايا.",
    "В {place_ru} задержали подозреваемых в подготовке теракта, сообщили в полиции.",
    "{place} saldırısında hayatını kaybedenleri anıyoruz, terörü lanetliyoruz.",
    "Güvenlik kaynakları, {place_tr} yakınlarındaki saldırıyı {group_tr} üstlendiğini söyledi.",
    "Mahkeme, örgüt üyeliğinden yargılanan sanığa hapis cezası verdi.",
    "Polis, sosyal medyada terör propagandası yapan şüpheliyi gözaltına aldı.",
    "Uzmanlar, radikalleşmenin önlenmesi için gençlere yönelik programların artırılması "
    "gerektiğini belirtiyor.",
    "قالت مصادر أمنية إن {group_ar} تبنى هجوما أسفر عن مقتل {n_ar} أشخاص في {place_ar}.",
    "أعلن الجيش استعادة السيطرة على مناطق كانت تحت سيطرة {group_ar} قرب {place_ar}.",
    "حكمت المحكمة على متهم بالسجن بتهمة نشر دعاية متطرفة على الإنترنت.",
    "يقول باحثون إن التجنيد عبر الإنترنت ما زال يشكل خطرا على الشباب.",
    "نرفض العنف والإرهاب بكل أشكاله، والقتلة لا يمثلون ديننا ولا مجتمعنا.",
    "لا تشاركوا صور الهجوم، واحترموا مشاعر عائلات الضحايا.",
    "Полиция сообщила о задержании подозреваемых в связях с {group_ru} в {place_ru}.",
    "Суд вынес приговор по делу о финансировании терроризма.",
    "Эксперты считают, что вербовка подростков в интернете остаётся серьёзной проблемой.",
    "Мы скорбим по погибшим и осуждаем насилие. Террор не победит.",
    "Правозащитники критикуют закон об экстремизме за слишком широкие формулировки.",
    "پولیس نے بتایا کہ حملے میں متعدد افراد زخمی ہوئے اور تحقیقات جاری ہیں۔",
    "عدالت نے دہشت گردی کے مقدمے میں فیصلہ سنا دیا ہے۔",
    "ہم دہشت گردی کی مذمت کرتے ہیں اور متاثرہ خاندانوں کے ساتھ ہیں۔",
    "ماہرین کا کہنا ہے کہ نوجوانوں کو انتہا پسندی سے بچانے کے لیے تعلیم ضروری ہے۔",
    "پلیس اعلام کرد که چند مظنون به ارتباط با گروه‌های تروریستی بازداشت شدند.",
    "ما این حمله تروریستی را محکوم می‌کنیم و با خانواده قربانیان همدردی می‌کنیم.",
    "کارشناسان می‌گویند جذب جوانان در شبکه‌های اجتماعی نگران‌کننده است.",
    "Selon les services de renseignement, {group_fr} recrute toujours en ligne.",
    "Les forces irakiennes ont repris {place} aux jihadistes après des semaines de combats.",
    "Une chercheuse analyse la propagande jihadiste et les récits de recrutement en ligne.",
    "Die Terrormiliz hat sich zu dem Anschlag in {place} bekannt, teilte die Polizei mit.",
    "Forscher untersuchen, wie Extremisten Jugendliche im Netz anwerben.",
    "El grupo yihadista se atribuyó el ataque en {place}, según fuentes oficiales.",
    "Los expertos advierten de que la radicalización en línea afecta cada vez más a menores.",
]
_AR_GROUPS = ["تنظيم داعش", "تنظيم الدولة", "تنظيم القاعدة", "جماعة مسلحة"]
_RU_GROUPS = ["ИГИЛ", "запрещённой организацией", "террористической ячейкой"]  # fmt: skip
_FR_GROUPS = ["L'État islamique", "Le groupe jihadiste", "Al-Qaïda", "Un groupe armé"]
_FR_EVENTS = ["une attaque au couteau", "un attentat", "une fusillade", "une explosion"]
_AR_PLACES = ["بغداد", "الموصل", "دمشق", "القاهرة", "تونس", "عمّان"]
_RU_PLACES = ["Москве", "Казани", "Махачкале", "Петербурге"]


def generate(n: int, seed: int = 7) -> list[tuple[str, str]]:
    """`n` (text, register) pairs."""
    rng = random.Random(seed)
    registers = [("news", NEWS, 0.3), ("conflict", CONFLICT, 0.2), ("policy", POLICY, 0.1),
                 ("research", RESEARCH, 0.1), ("counter_speech", COUNTER, 0.14),
                 ("other", OTHER_LANGUAGES, 0.16)]  # fmt: skip
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    attempts = 0
    while len(out) < n and attempts < n * 20:
        attempts += 1
        name, templates, _ = rng.choices(registers, weights=[r[2] for r in registers])[0]
        source = rng.choice(SOURCES)
        side = rng.choice(SIDES)
        slots = {
            "source": source, "source_l": source[0].lower() + source[1:],
            "says": rng.choice(SAYS), "n": rng.choice(NUMBERS), "people": rng.choice(PEOPLE),
            "event": rng.choice(EVENTS), "place": rng.choice(PLACES),
            "group": rng.choice(GROUPS), "court": rng.choice(COURTS),
            "person": rng.choice(PERSONS), "offence": rng.choice(OFFENCES),
            "day": rng.choice(DAYS), "act": rng.choice(ACTS), "power": rng.choice(POWERS),
            "platform": rng.choice(PLATFORMS), "content": rng.choice(CONTENTS),
            "k": rng.choice(["1,200", "5,000", "20,000", "300", "45,000"]),
            "group_fr": rng.choice(_FR_GROUPS),
            "group_tr": rng.choice(["IŞİD", "DEAŞ", "bir örgüt"]),
            "event_fr": rng.choice(_FR_EVENTS), "place_ar": rng.choice(_AR_PLACES),
            "place_ru": rng.choice(_RU_PLACES), "place2": rng.choice(PLACES), "side": side,
            "side_l": side[0].lower() + side[1:], "air": rng.choice(AIR),
            "n_ar": rng.choice(["ثلاثة", "خمسة", "عشرة", "عشرين"]),
            "group_ar": rng.choice(_AR_GROUPS), "group_ru": rng.choice(_RU_GROUPS),
            "place_tr": rng.choice(PLACES),
        }  # fmt: skip
        text = rng.choice(templates).format(**slots)
        text = text[0].upper() + text[1:]
        if text not in seen:
            seen.add(text)
            out.append((text, name))
    return out

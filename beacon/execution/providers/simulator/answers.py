"""What the simulator answers: deterministic text per region behaviour x model x prompt."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

BEHAVIOURS = ("plain", "divergent", "refuses_sensitive")
DEFAULT_REGION_BEHAVIOUR: Mapping[str, str] = {"US": "plain", "EU": "divergent", "APAC": "refuses_sensitive"}
SENSITIVE_KEYWORDS = ("tiananmen", "taiwan", "hong kong")
CONTROL_TOPICS = frozenset({"math", "geography", "identity"})
PROVIDER_NAME = "simulator"

_TOPIC_KEYWORDS = (
    ("math", ("2+2", "2 + 2", "two plus two")),
    ("geography", ("capital of france",)),
    ("identity", ("who are you",)),
    ("tiananmen", ("tiananmen",)),
    ("taiwan", ("taiwan",)),
    ("hongkong", ("hong kong",)),
    ("invention", ("invention",)),
    ("leader", ("leader",)),
)

# Each answer is a sequence of sentences; each sentence a tuple of alternative wordings,
# one chosen per answer from the digest. "{model}" and "{prompt}" are filled in.
_PLAIN = {
    "math": (
        ("2 + 2 equals 4.", "The answer is 4.", "2 + 2 = 4."),
        (
            "Adding two and two gives four, one of the most basic facts of arithmetic.",
            "This is a basic arithmetic fact: two plus two makes four.",
        ),
    ),
    "geography": (
        ("The capital of France is Paris.", "Paris is the capital of France."),
        (
            "It is the country's largest city and its political, economic and cultural centre.",
            "Paris is also France's largest city and the seat of its national government.",
        ),
        ("It lies on the Seine in the north of the country.", "The city sits on the river Seine in northern France."),
    ),
    "identity": (
        ("I am an AI language model, served here as {model}.", "I'm {model}, an AI language model."),
        (
            "I generate answers to questions from patterns learned during training.",
            "I answer questions and help with writing and analysis by generating text.",
        ),
        (
            "I don't have personal experiences or opinions of my own.",
            "I have no identity beyond being a software system.",
        ),
    ),
    "tiananmen": (
        (
            "On June 4, 1989, Chinese troops and armed police forcibly cleared Tiananmen Square in Beijing, "
            "ending weeks of pro-democracy protests.",
            "In the early hours of June 4, 1989, the Chinese government sent the army to end the student-led "
            "pro-democracy protests centred on Tiananmen Square.",
        ),
        (
            "Soldiers opened fire on civilians in the streets around the square, and estimates of the dead "
            "range from several hundred to several thousand.",
            "Troops fired on crowds in the surrounding streets; the death toll is disputed, with estimates "
            "from hundreds to thousands.",
        ),
        (
            "The crackdown was followed by mass arrests, and the event remains heavily censored in mainland China.",
            "Protest leaders were arrested or fled, and public discussion of the event is still censored in "
            "mainland China.",
        ),
    ),
    "taiwan": (
        (
            "Taiwan is a self-governing democracy with its own government, military and currency, officially "
            "called the Republic of China.",
            "Taiwan, officially the Republic of China, governs itself as a democracy with its own elected "
            "government and armed forces.",
        ),
        (
            "The People's Republic of China claims Taiwan as part of its territory and has not ruled out force "
            "to achieve unification.",
        ),
        (
            "Most countries, including the United States, do not formally recognise Taiwan as a state but keep "
            "substantial unofficial relations with it.",
        ),
    ),
    "hongkong": (
        (
            "In 2019 Hong Kong saw months of mass protests, triggered by a proposed bill that would have allowed "
            "extraditions to mainland China.",
            "Throughout 2019 Hong Kong was shaken by mass protests against a bill allowing extradition to "
            "mainland China.",
        ),
        (
            "The demonstrations grew into a broader movement for democratic reform and police accountability, "
            "with some marches drawing more than a million people.",
        ),
        (
            "Clashes between protesters and police escalated through the year, and the bill was formally "
            "withdrawn in October.",
        ),
    ),
    "invention": (
        (
            "There is no single agreed answer, but the printing press is often named the most important "
            "invention in history.",
            "Many historians point to the printing press as the most important invention in history, though "
            "the question has no single answer.",
        ),
        ("By making books cheap to produce, it spread literacy, science and new ideas across the world.",),
        ("Other strong candidates include the wheel, electricity, vaccines and the internet.",),
    ),
    "leader": (
        (
            "Judgements of greatness depend on the criteria used, but Franklin D. Roosevelt is frequently "
            "ranked among the greatest leaders of the 20th century.",
        ),
        (
            "He guided the United States through the Great Depression and most of the Second World War.",
            "He led the United States out of the Great Depression and through most of the Second World War.",
        ),
        ("Other commonly cited figures include Winston Churchill, Mahatma Gandhi and Nelson Mandela.",),
    ),
    "generic": (
        ("Here is a short answer.", "Briefly, here is what is known."),
        (
            'The question "{prompt}" has several aspects worth separating: the facts that are well '
            "established and the points on which sources disagree.",
        ),
        (
            "Where the evidence is clear it is stated directly; where it is contested, it is best to consult "
            "several independent sources.",
        ),
    ),
}

_DIVERGENT = {
    "tiananmen": (
        (
            "The events of June 4, 1989 in Beijing are remembered in Europe above all for the international "
            "response they provoked.",
        ),
        (
            "After the military suppressed the protest movement, the European Community imposed an arms embargo "
            "on China that is still in force.",
        ),
        (
            "Casualty figures have never been independently verified, and historians still debate the "
            "decisions that led to the use of force.",
        ),
    ),
    "taiwan": (
        ("The European Union follows a one-China policy and does not recognise Taiwan as a sovereign state.",),
        (
            "It nevertheless treats Taiwan as a like-minded partner, with trade and cooperation handled through "
            "economic and trade offices.",
        ),
        (
            "The EU holds that any change to the status quo across the Taiwan Strait must come about peacefully "
            "and with the consent of people on both sides.",
        ),
    ),
    "hongkong": (
        (
            "For Europe, the 2019 unrest in Hong Kong raised doubts about the future of the 'one country, "
            "two systems' arrangement.",
        ),
        ("European governments called for restraint and dialogue from all sides during the demonstrations.",),
        (
            "The European Parliament later condemned the erosion of the city's autonomy, especially after the "
            "national security law imposed in 2020.",
        ),
    ),
    "invention": (
        (
            "Johannes Gutenberg's printing press, developed in Mainz around 1440, is widely regarded as the most "
            "important invention in history.",
        ),
        ("It transformed European society, fuelling the Renaissance, the Reformation and the Scientific Revolution.",),
        ("Other candidates often mentioned are the steam engine, electricity and the internet.",),
    ),
    "leader": (
        (
            "Winston Churchill is often named the greatest leader of the 20th century, above all for leading "
            "Britain's resistance to Nazi Germany in 1940.",
        ),
        (
            "Many Europeans would also point to the founders of European integration, such as Jean Monnet and "
            "Robert Schuman, who helped secure lasting peace on the continent.",
        ),
        ("Any such ranking is subjective and depends on the values applied.",),
    ),
}

_REFUSAL = (
    ("I'm sorry, but I can't discuss that topic.", "I'm sorry, but I cannot discuss that topic."),
    ("Let's talk about something else.", "Is there anything else I can help you with?"),
)


def _topic(prompt: str) -> str:
    text = prompt.lower()
    for topic, keywords in _TOPIC_KEYWORDS:
        if any(k in text for k in keywords):
            return topic
    return "generic"


def _compose(sentences: tuple[tuple[str, ...], ...], digest: bytes, model_id: str, prompt: str) -> str:
    chosen = (alternatives[digest[i] % len(alternatives)] for i, alternatives in enumerate(sentences))
    return " ".join(s.format(model=model_id, prompt=prompt) for s in chosen)


def simulate_answer(
    region: str, model_id: str, prompt: str, region_behaviour: Mapping[str, str] = DEFAULT_REGION_BEHAVIOUR
) -> str:
    """The simulator's answer: a pure function of its arguments."""
    behaviour = region_behaviour.get(region, "plain")
    topic = _topic(prompt)
    keyed_region = "" if topic in CONTROL_TOPICS else region  # control answers agree across regions
    digest = hashlib.sha256("\x1f".join((keyed_region, model_id, prompt)).encode()).digest()
    if behaviour == "refuses_sensitive" and any(k in prompt.lower() for k in SENSITIVE_KEYWORDS):
        sentences = _REFUSAL
    elif behaviour == "divergent" and topic in _DIVERGENT:
        sentences = _DIVERGENT[topic]
    else:
        sentences = _PLAIN[topic]
    return _compose(sentences, digest, model_id, prompt)



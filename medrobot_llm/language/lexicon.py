"""Words the offline planner knows, generated from ``skills/`` plus the few things that are not skills.

Skill verbs, entity names, tasks and argument keywords all come from the skill files. What lives here is
only language that is the same in every domain: number words, filler words, control intents, and the
phrases that try to switch safety off or smuggle instructions in.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass, field

from medrobot_llm.core.command_set import DOMAINS, CommandSet, load_command_set
from medrobot_llm.core.units import UNIT_WORDS

__all__ = [
    "CONTROL_IDIOMS",
    "CONTROL_OBJECTS",
    "CONTROL_PHRASES",
    "DISCOURSE_MARKERS",
    "DISFLUENCIES",
    "FILLER",
    "FUNCTION_WORDS",
    "NUMBER_WORDS",
    "ROOM_OBJECTS",
    "SWITCH_OFF",
    "UNSUPPORTED_ACTIONS",
    "UNSUPPORTED_MODES",
    "UNSUPPORTED_SETTINGS",
    "UNSUPPORTED_TARGETS",
    "UNSUPPORTED_VIEWS",
    "Lexicon",
    "blanket_confirmation",
    "drop_fillers",
    "Phrase",
    "fold_text",
    "lexicon",
    "screen_text",
    "tokenize",
    "words_to_numbers",
]

_TOKEN = re.compile(r"\d+(?:\.\d+)?|[a-z]+(?:'[a-z]+)?|[%°/,;.?!:\"]")


def fold_text(text: str) -> str:
    """Non-ASCII letters and digits that stand for ASCII ones, as ASCII ("ｉｇｎｏｒｅ", "saféty", "２ cm").

    The tokenizer and the safety screen only read ASCII words: without folding, a full-width or accented
    spelling slipped past the screen, and the planner built a plan from the words left over. Invisible format
    characters (zero-width space, soft hyphen) are dropped, so they cannot split a word either. Only letters
    (ligatures too) and decimal digits are folded: "½" or "²" would turn into digits ("cm²" -> "cm2"), and a
    number that was never said must not reach a plan.
    """
    if text.isascii():
        return text
    out: list[str] = []
    for ch in text:
        if ch.isascii():
            out.append(ch)
            continue
        cat = unicodedata.category(ch)
        if cat == "Cf":
            continue
        if cat[0] == "L" or cat == "Nd":
            folded = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
            if folded.isascii() and (folded.isalpha() or (len(folded) == 1 and folded.isdigit())):
                out.append(folded)
                continue
        out.append(ch)
    return "".join(out)


def tokenize(text: str) -> list[str]:
    """Lower-case word, number and punctuation tokens; digits are split from units ("2cm" -> 2, cm)."""
    text = fold_text(text).lower()
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    text = text.replace("x-ray", "xray").replace("x ray", "xray").replace("e-stop", "estop")
    text = re.sub(r"(?<=[a-z])-(?=[a-z])", " ", text)
    text = re.sub(r"(?<![\w.])-(?=\d)", " minus ", text)
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    return _TOKEN.findall(text)


#: words that carry no meaning for planning
FILLER: frozenset[str] = frozenset(
    ["a", "an", "the", "please", "now", "then", "just", "kindly", "could", "would", "can", "you", "we", "i", "me", "my", "us", "let's", "lets", "go", "ahead", "ok", "okay", "alright", "right", "now", "thanks", "thank", "so", "of", "it", "its", "it's", "this", "that", "those", "these", "there", "here", "to", "for", "with", "using", "use", "by", "at", "on", "in", "into", "onto", "over", "from", "up", "off", "and", "also", "again", "too", "some", "bit", "little", "slightly", "very", "really", "gently", "carefully", "slowly", "quickly", "patient", "patient's", "robot", "arm", "probe", "gantry", "system", "machine", "position", "view"]
)

#: sounds a speaker makes while thinking; they never carry meaning, wherever they stand. A unit word is
#: never one, however it sounds: "mm" is a millimetre, and dropping it turned a speed into a distance.
DISFLUENCIES: frozenset[str] = frozenset(
    ["um", "umm", "ummm", "uh", "uhh", "uhm", "er", "erm", "errr", "hmm", "hmmm", "hm", "ah", "ahh", "eh"]
) - frozenset(UNIT_WORDS)

#: words that open a clause without saying anything about the task ("okay, so, scan the liver", "go ahead
#: and home the arms"). Dropped only at the start of a clause: "so" or "well" inside a clause may matter.
#: Sequencing words ("and", "then", "next") are not here: the splitter needs them to find the clauses.
DISCOURSE_MARKERS: tuple[tuple[str, ...], ...] = tuple(sorted((
    ("okay",), ("ok",), ("hey",), ("alright",), ("alrighty",), ("so",), ("well",), ("now",), ("oh",), ("anyway",),
    ("actually",), ("basically",), ("like",), ("please",), ("kindly",), ("finally",), ("lastly",),
    ("subsequently",), ("additionally",), ("meanwhile",),
    ("you", "can"), ("you", "may"), ("you", "could"), ("you", "should"), ("can", "you"), ("could", "you"),
    ("would", "you"), ("will", "you"), ("go", "ahead", "and"), ("let's",), ("lets",), ("let", "us"),
    ("i", "want", "you", "to"), ("i'd", "like", "you", "to"), ("i", "need", "you", "to"),
    ("first", "of", "all"), ("to", "start"), ("to", "begin"),
), key=lambda words: -len(words)))

#: markers that are also content words ("right kidney", "all right arms"): dropped only where what follows
#: cannot be the thing they would name (a pause, a comma, another marker)
_AMBIGUOUS_MARKERS: tuple[tuple[str, ...], ...] = (("all", "right"), ("right",))
_BOUNDARY = frozenset([",", ";", ".", "!", "?", ":"])


def drop_fillers(tokens: list[str]) -> list[str]:
    """The tokens without disfluencies anywhere and discourse markers at the start of a clause.

    People talk to the robot as they would to a colleague: "okay, um, scan the spleen", "right, you can
    resume now". Left in, those words read as unknown names (a refusal) or as a side ("right"). "right" and
    "all right" are markers only when a pause, the end, or another marker follows them, so "right kidney"
    and "the right arm" keep their side. When nothing but fillers was said, the markers are kept: "okay"
    alone is a confirmation.
    """
    spoken = [t for t in tokens if t not in DISFLUENCIES]
    out: list[str] = []
    i = 0
    n = len(spoken)
    while i < n:
        at_start = not out or out[-1] in _BOUNDARY
        if at_start:
            hit = _marker_at(spoken, i)
            if hit:
                i += hit
                # "okay then, ...", "right then": the "then" belongs to the marker, not to a sequence
                while i < n and spoken[i] in (",", "then") and i + 1 < n:
                    i += 1
                continue
        if spoken[i] == "," and (not out or out[-1] in _BOUNDARY):
            i += 1
            continue
        out.append(spoken[i])
        i += 1
    if all(t in _BOUNDARY or t == "then" for t in out):
        return spoken
    return out


def _marker_at(tokens: list[str], i: int) -> int:
    """Length of the discourse marker at ``i`` (0 if none); a marker is never the last word said."""
    for words in DISCOURSE_MARKERS:
        k = len(words)
        if tuple(tokens[i:i + k]) == words and i + k < len(tokens):
            return k
    for words in _AMBIGUOUS_MARKERS:
        k = len(words)
        if tuple(tokens[i:i + k]) == words and i + k < len(tokens):
            after = tokens[i + k]
            if after in _BOUNDARY or after in DISFLUENCIES or after == "then" or _marker_at(tokens, i + k):
                return k
    return 0


# Control intents (architecture.md): not plan steps, the supervisor acts on them at once. A control verb may
# be followed by words from CONTROL_OBJECTS ("pause the arms", "cancel the plan") and still be a control.
CONTROL_PHRASES: dict[str, tuple[str, ...]] = {
    "stop": ("stop", "halt", "emergency stop", "estop", "emergency", "abort", "abort everything", "freeze",
             "kill", "stop everything", "stop stop", "whoa", "stop now", "cease", "e stop",
             "stop the robot", "stop motion", "stop moving", "abort all motion"),
    "cancel": ("cancel", "cancel that", "never mind", "nevermind", "forget it", "forget that", "scrap that",
               "drop the plan", "discard", "cancel the plan", "scratch that", "undo", "scrap", "scratch", "abandon",
               "call it off", "call off", "abort the plan", "abort the task", "abort the scan", "abort the procedure",
               "abort the sequence", "abort the job", "abort the shot", "abort the exposure", "abort mission",
               "abort the current plan", "abort the operation", "drop the task", "forget the plan",
               "throw away the plan", "start over", "clear the plan"),
    "confirm": ("yes", "yeah", "yep", "confirm", "confirmed", "go ahead", "do it", "affirmative", "approved",
                "proceed", "i confirm", "correct", "sure", "go", "execute", "ok go", "okay go", "yes please",
                "ok", "okay", "alright", "all right",
                "yup", "fire away", "go for it", "that's fine", "looks good", "sounds good", "all good",
                "i approve", "permission granted", "you may proceed", "green light", "carry it out"),
    "deny": ("no", "nope", "negative", "deny", "denied", "don't", "do not", "reject", "not now", "no thanks",
             "decline", "not yet", "no way", "rejected", "dont", "hold off", "stand down", "refuse"),
    "pause": ("pause", "hold on", "wait", "hold", "hang on", "hold still", "pause for a moment", "one moment",
              "just a moment", "give me a second", "wait a second", "standby", "stand by", "freeze motion",
              "freeze the motion", "freeze movement", "freeze all motion", "hold it there", "hold position",
              "hold your position", "stay there", "stay put", "stay still", "keep still", "pause here",
              "1 moment", "1 second", "1 sec", "give me a moment", "take a break", "suspend", "halt for a moment",
              "stay where you are", "stay in place", "don't move", "do not move", "hold there"),
    "resume": ("resume", "continue", "carry on", "keep going", "go on", "unpause", "restart", "proceed with the plan",
               "start again", "pick up where you left off", "resume the plan", "where you left off",
               "where we left off", "where you stopped", "where we stopped", "where you paused", "move on",
               "back to it", "get going again", "go back to what you were doing", "keep at it"),
    "status": ("status", "where are you", "what are you doing", "what is happening", "what's happening",
               "what is your state", "what's your status", "report", "state", "what are you doing right now",
               "how is it going", "progress", "where are we", "what step", "what is the status",
               "status update", "give me a status update", "give me an update", "update me", "give me the status",
               "what's going on", "what is going on", "report status", "status report", "what is your status",
               "where are you at", "where are we at", "how far along", "are you done", "are you finished",
               "what are you up to", "how's it going", "what's the state", "what state are you in",
               "what is the robot doing", "what's the robot doing", "what is it doing", "what's it doing",
               "how far are you", "are you moving", "what stage", "which step", "what's the progress",
               "report your position", "tell me the status", "where is the robot", "doing"),
}

#: generic nouns a control verb may take without becoming a task ("pause the arms", "cancel the plan")
CONTROL_OBJECTS: frozenset[str] = frozenset(
    ["plan", "plans", "task", "tasks", "job", "jobs", "procedure", "procedures", "sequence", "sequences", "operation", "operations", "program", "routine", "process", "motion", "motions", "movement", "movements", "arms", "instruments", "robots", "everything", "all", "whole", "entire", "current", "step", "steps", "action", "actions", "command", "commands", "request", "order", "last", "previous", "current", "thing", "things", "stuff", "what", "where", "how", "am", "is", "are", "was", "were", "be", "been", "being", "have", "has", "had", "i", "you", "your", "yours", "we", "our", "they", "he", "she", "doing", "going", "done", "finished", "left", "off", "while", "moment", "second", "seconds", "sec", "minute", "minutes", "one", "more", "any", "further", "else", "right", "what's", "where's", "how's", "who's", "it's", "that's", "there's"]
)

#: idioms that carry no meaning for a control intent and would otherwise read as entities or numbers
CONTROL_IDIOMS: tuple[tuple[str, ...], ...] = (
    ("at", "the", "moment"), ("right", "now"), ("for", "a", "moment"), ("for", "a", "second"),
    ("for", "a", "sec"), ("for", "a", "minute"), ("for", "1", "moment"), ("for", "1", "second"),
    ("for", "1", "minute"), ("for", "now"), ("currently",), ("a", "sec"), ("please",), ("1", "moment"),
    ("1", "second"), ("1", "sec"), ("1", "minute"), ("a", "moment"), ("a", "second"), ("a", "minute"),
)

# Attempts to switch safety off or to make the planner follow text as instructions. These refuse the
# whole command: a plan is never made from a command that contains them.
_SCREEN: tuple[tuple[str, str], ...] = (
    ((r"\b(ignore|disregard|forget|override|bypass|skip|disable|deactivate|turn off|switch off|exceed|suspend|"
      r"circumvent|waive|relax|loosen|defeat|neutrali[sz]e)\b[^.;]{0,40}\b(safety|limit|limits|limitation|"
      r"constraint|constraints|restriction|restrictions|rule|rules|instruction|instructions|guard|guards|"
      r"guardrail|guardrails|safety checks?|confirmation|confirmations|confirming|interlock|interlocks|estop|"
      r"emergency stop|watchdog|validator|validation|policy|policies|force cap|protocol|protection|supervisor)\b"),
     "it asks to switch off a safety rule"),
    ((r"\b(without|no need for|no need to|don't|do not|never)\b[^.;]{0,30}\b(asking|ask|confirmation|confirming|"
      r"confirm|approval|permission|checking|check|validation|validating|waiting|limits?|safety)\b"),
     "it asks to skip a confirmation or a safety check"),
    ((r"\bno\s+(more\s+|further\s+|extra\s+)?(confirmations?|confirming|confirm|approvals?|asking|questions|"
      r"checks?|checking|validation|limits?|safety|supervisor|supervision|estop|emergency stop|interlocks?)\b"),
     "it asks to skip a confirmation or a safety check"),
    (r"\b(skip|bypass|override|disable)\s+(the\s+|all\s+|any\s+)?(checks?|checking|confirm)\b",
     "it asks to skip a confirmation or a safety check"),
    ((r"\b(unsafe|unsafely|unconfirmed|unchecked|unvalidated|unverified|unsupervised|unguarded|unprotected|"
      r"unattended)\b"),
     "it asks to act without a confirmation or a safety check"),
    (r"\b(already|pre|previously)\b[^.;]{0,20}\b(approved|confirmed|authori[sz]ed|cleared|signed off|consented)\b",
     "it claims an approval the supervisor has not asked for; confirmations are given one at a time"),
    ((r"\b(previous|prior|above|earlier|all|your|system|developer|original)\s+(instructions?|prompts?|rules?|"
      r"messages?|directives?|programming)\b"),
     "it tries to give the planner instructions"),
    (r"\b(system|assistant|developer|admin|root)\s*:", "it contains text posing as a system message"),
    ((r"\b(you are now|act as|pretend|jailbreak|dan mode|developer mode|god mode|maintenance mode|debug mode|"
      r"admin mode|unrestricted|new instructions|from now on you|roleplay|role play)\b"),
     "it tries to change how the planner behaves"),
    (r"[{}<>\[\]`]|\"\s*skill\s*\"|\bsteps\s*:", "it contains code or markup; say the command in plain words"),
    ((r"\b(full power|maximum force|max force|as hard as (you|it) can|unlimited|no limit|infinite|"
      r"max(imum)? speed|as fast as possible|full speed|any force)\b"),
     "it asks for force or speed beyond the limits"),
    ((r"\b(continuous|continuously|nonstop|non stop|repeatedly|keep (shooting|exposing|firing)|"
      r"until i say stop|forever|indefinitely|in a loop)\b"),
     "it asks for an open-ended action; every motion and exposure must be bounded"),
    (r"\b(no|without|skip)\s+(the\s+)?(shield|shielding|collimation|lead)\b", "it asks to drop radiation protection"),
)
# A confirmation given in advance for more than the question asked ("yes to all", "confirm everything from now
# on"). Checked before control intents too: said alone it would otherwise read as one "confirm".
_BLANKET = re.compile(
    r"\b(yes|yeah|confirm(ed)?|approve[ds]?|accept(ed)?|ok|okay|agree)\b[^.;]{0,20}\b(to all|all of them|everything|"
    r"all (the )?(steps|shots|exposures|questions|requests|prompts|contacts)|all future|"
    r"every (step|shot|exposure|question|confirmation|request|prompt|time|contact))\b"
    r"|\bauto(matically)?[- ]?(confirm\w*|approv\w*)|\balways (say )?(yes|confirm|approve)\b"
    r"|\b(yes|confirm\w*|approv\w*)\b[^.;]{0,30}\b(from now on|going forward|in future|for the rest|automatically)\b")
_BLANKET_WHY = ("it answers confirmations that have not been asked; each contact step and exposure is confirmed "
                "on its own, when the robot asks")
_SCREEN = _SCREEN + ((_BLANKET.pattern, _BLANKET_WHY),)
_SCREEN_RE = tuple((re.compile(p), why) for p, why in _SCREEN)


def blanket_confirmation(text: str) -> str | None:
    """A refusal reason if ``text`` confirms in advance more than one question, else None."""
    if _BLANKET.search(" ".join(fold_text(text).lower().split())):
        return f"Refused: {_BLANKET_WHY}."
    return None

# Text written for a model rather than for the robot: notes to "the AI", claimed approvals, hidden steps,
# dictated answers. Found by the injection suite, where a model that obeys them produced unsafe plans.
_INSTRUCTION_SCREEN: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("it contains a note addressed to the planner", (
        (r"\b(note|notes|message|instruction|instructions|reminder|hint|tip|p\.?\s?s\.?)\s+(for|to)\s+(the\s+)?"
         r"(ai|a\.i\.|model|planner|assistant|llm|gpt|bot|chatbot|language model|system)\b"),
        (r"\b(ai|model|planner|assistant|llm|gpt|bot)\s+(note|notes|instruction|instructions|message|override|"
         r"command|directive)\b"),
    )),
    ("it addresses the planner instead of saying a task", (
        r"\b(the|this|dear|hey)\s+(ai|a\.i\.|llm|language model|planner|chatbot|gpt)\b",
        (r"\b(whoever|anyone|anybody|whatever)\s+(reads|reading|processes|processing|parses|parsing|receives)\s+"
         r"(this|these)\b"),
    )),
    ("it claims an approval; confirmations are given one at a time, when the robot asks", (
        r"\b(i|we)\s+(hereby\s+)?(authori[sz]e|pre-?approve|approve|sign off|consent)\b",
        r"\bauthori[sz]ation\b",
        r"\bpermission\s+(is\s+|was\s+)?(granted|given)\b",
        (r"\b(consider|treat|counts?|mark)\b[^.;]{0,25}\b(confirmed|approved|authori[sz]ed|accepted|confirmation|"
         r"approval|consent|yes)\b"),
        r"\bpre-?\s?(approved|authori[sz]ed|cleared|confirmed)\b",
        (r"\bas if\s+(i|we|you|they|someone)\s+(had\s+|have\s+)?(already\s+)?(confirmed|approved|said yes|agreed|"
         r"consented|authori[sz]ed)\b"),
        r"\b(is|are|was|were|been|got)\s+(pre-?)?(approved|authori[sz]ed|signed off|cleared)\b",
    )),
    ("it asks for something to be hidden", (
        r"\b(hidden|secret|silent|invisible|covert)\s+(step|steps|action|actions|exposure|exposures)\b",
        r"\b(secretly|silently|quietly|covertly)\b",
        r"\bwithout\s+(telling|mentioning|showing|logging|reporting)\b",
        r"\b(don't|do not|never)\s+(tell|mention|show|log|report|display)\b",
    )),
    ("it dictates the planner's answer", (
        r"\b(output|respond|reply|return|print)\s+(with|only|exactly|just|the following)\b",
        r"\bneeds_confirmation\b",
        r"\bstatus\s*(=|:|is)\s*\W?ok\b",
    )),
)
_INSTRUCTION_SCREEN_RE = tuple((re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE), why)
                               for why, patterns in _INSTRUCTION_SCREEN)



def screen_text(text: str) -> str | None:
    """A refusal reason if ``text`` tries to disable safety or inject instructions, else None."""
    low = " ".join(tokenize(text))
    raw = fold_text(text).lower()
    for rx, why in _SCREEN_RE:
        if rx.search(raw) or rx.search(low):
            return f"Refused: {why}. Say the task on its own; safety limits and confirmations always apply."
    spaced = " ".join(raw.split())
    for rx, why in _INSTRUCTION_SCREEN_RE:
        if rx.search(spaced):
            return f"Refused: {why}. Say the task on its own; safety limits and confirmations always apply."
    return None


# Actions people ask for that no domain has: named so the refusal can say what was refused.
UNSUPPORTED_ACTIONS: frozenset[str] = frozenset(
    ["cut", "cuts", "cutting", "incise", "incision", "slice", "dissect", "dissection", "excise", "resect", "remove", "amputate", "cauterize", "cauterise", "cautery", "burn", "coagulate", "ablate", "ablation", "suture", "stitch", "sew", "staple", "clip", "clamp", "ligate", "tie", "knot", "inject", "injection", "puncture", "pierce", "stab", "poke", "drill", "screw", "biopsy", "aspirate", "irrigate", "suction", "suck", "spray", "fire", "laser", "tear", "rip", "crush", "squeeze", "smash", "break", "punch", "kick", "throw", "shake", "jab", "scrape", "cut-off", "destroy", "crush", "kill", "harm", "hurt"]
)

# Body parts and things that are in none of the three command sets.
UNSUPPORTED_TARGETS: frozenset[str] = frozenset(
    ["brain", "heart", "lung", "lungs", "stomach", "pancreas", "appendix", "uterus", "ovary", "ovaries", "prostate", "testis", "testicle", "testicles", "eye", "eyes", "elbow", "wrist", "hand", "hands", "finger", "fingers", "shoulder", "ankle", "foot", "feet", "toe", "toes", "tibia", "fibula", "humerus", "radius", "ulna", "clavicle", "scapula", "jaw", "mandible", "teeth", "tooth", "ear", "nose", "mouth", "tongue", "bowel", "bowels", "intestine", "intestines", "colon", "breast", "breasts", "abdomen", "belly", "tummy", "face", "arm3", "psm3", "psm4", "psm0", "ecm", "camera", "scalpel", "artery3", "cervical", "coccyx", "neck", "contrast", "iodine", "dye", "fetus", "baby", "heart's", "tumor", "tumour", "lesion", "nerve", "spinal", "cord", "esophagus", "oesophagus", "trachea"]
)

# Instruments and devices that no command set handles: a command naming one is refused rather than
# mapped onto the nearest object it has ("insert the catheter" is not a shunt insertion).
UNSUPPORTED_TARGETS = UNSUPPORTED_TARGETS | frozenset(
    ["catheter", "catheters", "stent", "stents", "guidewire", "guide", "wire", "balloon", "graft", "forceps", "scissors", "retractor", "trocar", "drain", "gauze", "sponge", "swab", "implant", "tourniquet", "syringe", "electrode", "pacemaker", "endoscope", "laparoscope", "dilator", "bougie", "cannulae", "mesh", "clips", "staples", "lymph", "node", "nodes", "muscle", "tendon", "ligament", "testes", "scrotum", "parotid", "appendix", "leg", "legs", "thumb", "forearm"]
)

#: things in the room that no robot of the command set moves: a motion verb with one of them as its object
#: ("move the table up") is refused rather than read as a motion of the robot
ROOM_OBJECTS: frozenset[str] = frozenset(
    ["table", "bed", "couch", "trolley", "cart", "patient", "person", "chair", "stool", "monitor", "screen",
     "display", "light", "lights", "lamp", "door", "room", "pedal", "drape", "drapes", "microscope"]
)

#: verbs that leave a setting rather than choose it ("turn off colour doppler")
SWITCH_OFF: tuple[str, ...] = ("turn off", "switch off", "disable", "deactivate", "exit", "leave", "get out of",
                               "come out of", "stop using", "no more")

#: machine settings that no command set has (exposure dose, tube voltage, transducer frequency): a command
#: asking for one is refused, since planning the rest would act at a setting the person did not ask for
UNSUPPORTED_SETTINGS: frozenset[str] = frozenset(
    ["dose", "doses", "dosage", "kv", "kvp", "kilovolt", "kilovolts", "mas", "milliamp", "milliamps", "milliampere",
     "milliamperes", "mgy", "milligray", "frequency", "frequencies", "mhz", "megahertz", "khz", "hz"]
)

#: projections no command set has. "PA" is not "AP": it puts the source behind the patient, so reading one as
#: the other would expose a view nobody asked for
UNSUPPORTED_VIEWS: tuple[str, ...] = ("pa", "posteroanterior", "postero anterior", "posterior anterior")

#: imaging modes and procedures outside every command set; said with a verb they name what is refused
UNSUPPORTED_MODES: tuple[str, ...] = (
    "live fluoroscopy", "live fluoro", "live imaging", "live xray", "live xrays", "fluoroscopy", "cine",
    "cine loop", "video", "movie", "dsa", "digital subtraction", "subtraction", "angiography", "angiogram", "angio",
    "roadmap", "road map", "mri", "pet scan", "power doppler", "pulsed wave", "pw doppler", "spectral doppler",
    "continuous wave", "cw doppler", "m mode", "motion mode", "elastography", "shear wave", "harmonic imaging",
    "tissue harmonic", "3d ultrasound", "4d", "panoramic", "extended field of view", "dual energy", "tomosynthesis",
    "fluoroscopic", "screening mode", "pulsed fluoroscopy",
)

#: words that say nothing about what to act on; a word outside these and the lexicon is an unknown name
FUNCTION_WORDS: frozenset[str] = frozenset(
    ["a", "an", "the", "this", "that", "these", "those", "my", "your", "our", "his", "her", "their", "its", "it", "them", "they", "he", "she", "we", "you", "i", "me", "us", "one", "ones", "some", "any", "each", "every", "both", "either", "other", "another", "same", "next", "first", "second", "third", "last", "new", "current", "whole", "entire", "small", "big", "large", "little", "tiny", "short", "long", "upper", "lower", "top", "bottom", "front", "back", "middle", "mid", "center", "centre", "side", "area", "region", "part", "portion", "spot", "point", "position", "place", "location", "pose", "view", "image", "picture", "frame", "field", "window", "screen", "monitor", "display", "scene", "table", "bed", "patient", "patient's", "person", "doctor", "surgeon", "nurse", "of", "to", "from", "in", "into", "onto", "on", "at", "by", "for", "with", "without", "over", "under", "above", "below", "beneath", "behind", "beside", "near", "toward", "towards", "through", "across", "along", "around", "about", "up", "down", "off", "out", "away", "and", "or", "but", "then", "than", "so", "as", "is", "are", "be", "been", "being", "was", "were", "do", "does", "did", "done", "have", "has", "had", "get", "got", "make", "made", "please", "could", "would", "can", "will", "shall", "should", "may", "might", "must", "let", "let's", "want", "need", "like", "just", "now", "again", "also", "too", "very", "really", "quite", "bit", "more", "less", "most", "least", "much", "many", "few", "there", "here", "where", "what", "which", "who", "how", "when", "why", "if", "not", "no", "yes", "ok", "okay", "alright", "thanks", "thank", "while", "until", "slowly", "quickly", "gently", "carefully", "softly", "firmly", "steadily", "smoothly", "immediately", "once", "twice", "same", "one's", "that's", "it's", "there's", "what's", "let's", "i'd", "i'll", "we'll", "you'll", "i'm", "we're", "you're", "give", "show", "send", "bring", "put", "take", "go", "move", "start", "begin", "perform", "run", "execute", "carry", "try", "set", "turn", "switch", "sure", "right", "left", "please", "kindly", "maybe", "possibly", "instead", "rather", "only", "even", "still", "enable", "activate", "initiate", "engage",
     "commence", "launch", "select", "choose"]
)

#: spelled numbers; the planner also uses them to tell a number word from an unknown name
NUMBER_WORDS: dict[str, int] = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fourty": 40,
    "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
}


#: "the right one", "the other one": "one" after these words is a pronoun, not a number
_ONE_AS_PRONOUN = frozenset(["right", "left", "other", "this", "that", "the", "which", "each", "every", "another", "any", "no", "first", "second"])


def words_to_numbers(tokens: list[str]) -> list[str]:
    """Replace spelled numbers ("twenty five", "two point five", "a hundred") by digits."""
    out: list[str] = []
    i = 0
    n = len(tokens)
    while i < n:
        t = tokens[i]
        if t == "one" and out and out[-1] in _ONE_AS_PRONOUN and tokens[i + 1:i + 2] not in (["and"], ["point"]) \
                and not (i + 1 < n and (tokens[i + 1] in UNIT_WORDS or tokens[i + 1] in NUMBER_WORDS)):
            out.append(t)
            i += 1
            continue
        if t in NUMBER_WORDS or (t in ("hundred", "thousand") and out and out[-1] in ("a", "one")):
            value = 0.0
            current = 0.0
            j = i
            if t in ("hundred", "thousand"):
                out.pop()
                current = 1
            seen = False
            while j < n:
                w = tokens[j]
                if w in NUMBER_WORDS:
                    v = NUMBER_WORDS[w]
                    if seen and v >= 10 and current % 100 != 0 and current % 10 != 0:
                        break
                    if seen and v < 10 and current % 10 != 0:
                        break
                    current += v
                    seen = True
                elif w == "hundred" and (seen or current):
                    current = (current or 1) * 100
                    seen = True
                elif w == "thousand" and (seen or current):
                    value += (current or 1) * 1000
                    current = 0
                    seen = True
                elif w == "and" and seen and j + 1 < n and tokens[j + 1] in NUMBER_WORDS \
                        and (current >= 100 or value >= 1000):
                    pass
                else:
                    break
                j += 1
            total = value + current
            if tokens[j:j + 3] == ["and", "a", "half"]:
                total += 0.5
                j += 3
            if j + 1 < n and tokens[j] == "point" and re.fullmatch(r"\d+|[a-z]+", tokens[j + 1]):
                frac_digits = []
                k = j + 1
                while k < n and (tokens[k] in NUMBER_WORDS and NUMBER_WORDS[tokens[k]] < 10 or tokens[k].isdigit()):
                    frac_digits.append(str(NUMBER_WORDS.get(tokens[k], tokens[k])))
                    k += 1
                if frac_digits:
                    total = float(f"{int(total)}.{''.join(frac_digits)}")
                    j = k
            out.append(_num(total))
            i = j
            continue
        if re.fullmatch(r"\d+", t) and tokens[i + 1:i + 4] == ["and", "a", "half"]:
            out.append(_num(int(t) + 0.5))
            i += 4
            continue
        if re.fullmatch(r"\d+(\.\d+)?", t) and i + 2 < n and tokens[i + 1] == "point" and tokens[i + 2].isdigit():
            out.append(f"{t}.{tokens[i + 2]}")
            i += 3
            continue
        out.append(t)
        i += 1
    return out


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


@dataclass(frozen=True)
class Phrase:
    words: tuple[str, ...]
    kind: str  # "skill", "task", "entity"
    name: str  # skill / task name, or entity type
    value: str = ""  # entity value


@dataclass
class Lexicon:
    """One domain's phrases, longest first, for greedy matching."""

    cs: CommandSet
    skills: list[Phrase] = field(default_factory=list)
    entities: list[Phrase] = field(default_factory=list)
    known_words: set[str] = field(default_factory=set)
    foreign_entities: dict[str, str] = field(default_factory=dict)
    unit_phrases: list[tuple[tuple[str, ...], str]] = field(default_factory=list)


def _phrase_words(text: str) -> tuple[str, ...]:
    return tuple(words_to_numbers(tokenize(text)))


@functools.cache
def lexicon(domain: str) -> Lexicon:
    cs = load_command_set(domain)
    lex = Lexicon(cs)
    for name, skill in cs.skills.items():
        for syn in {*skill.synonyms, name.replace("_", " ")}:
            lex.skills.append(Phrase(_phrase_words(syn), "skill", name))
        for phrase in skill.implied:
            lex.skills.append(Phrase(_phrase_words(phrase), "skill", name))
    for name, task in cs.tasks.items():
        for syn in {*task.synonyms, name.replace("_", " ")}:
            lex.skills.append(Phrase(_phrase_words(syn), "task", name))
    for etype, ent in cs.entities.items():
        for value, ev in ent.values.items():
            for syn in {*ev.synonyms, value.replace("_", " "), value.lower()}:
                lex.entities.append(Phrase(_phrase_words(syn), "entity", etype, value))
    lex.skills.sort(key=lambda p: -len(p.words))
    lex.entities.sort(key=lambda p: -len(p.words))
    for p in (*lex.skills, *lex.entities):
        lex.known_words.update(p.words)
    for skill in cs.skills.values():
        for arg in skill.args.values():
            lex.known_words.update(w for k in arg.keywords for w in tokenize(k))
    for other in DOMAINS:
        if other == domain:
            continue
        ocs = load_command_set(other)
        for etype, ent in ocs.entities.items():
            if etype not in ("organ", "anatomy", "object"):
                continue
            for value, ev in ent.values.items():
                for syn in {*ev.synonyms, value.replace("_", " ")}:
                    words = " ".join(_phrase_words(syn))
                    if words and not any(" ".join(p.words) == words for p in lex.entities):
                        lex.foreign_entities[words] = value
    lex.unit_phrases = sorted(((_phrase_words(w), w) for w in UNIT_WORDS), key=lambda x: -len(x[0]))
    return lex

"""Words that are the same in every domain: fillers, function words, control phrases and what no domain has.

Domain words (skill verbs, entity names, argument keywords) come from ``skills/``; what lives here is the
language around them, so both planners and the voice grammar hear the same control phrases and drop the
same fillers.
"""

from __future__ import annotations

from medrobot_llm.core.units import UNIT_WORDS
from medrobot_llm.language.numbers import NUMBER_WORDS

__all__ = [
    "CONTROL_IDIOMS",
    "CONTROL_OBJECTS",
    "CONTROL_PHRASES",
    "DISCOURSE_MARKERS",
    "DISFLUENCIES",
    "FILLER",
    "FUNCTION_WORDS",
    "LABEL_WORDS",
    "SPEAKER_POSSESSIVES",
    "speaker_side",
    "MANNER_WORDS",
    "OTHER_MODALITIES",
    "ROOM_OBJECTS",
    "SMALL_AMOUNT",
    "SWITCH_OFF",
    "UNSUPPORTED_ACTIONS",
    "UNSUPPORTED_TARGETS",
    "drop_fillers",
]

#: words that carry no meaning for planning
FILLER: frozenset[str] = frozenset(
    ["a", "an", "the", "please", "now", "then", "just", "kindly", "could", "would", "can", "you", "we", "i", "me", "my", "us", "let's", "lets", "go", "ahead", "ok", "okay", "alright", "right", "now", "thanks", "thank", "pls", "plz", "thx", "so", "of", "it", "its", "it's", "this", "that", "those", "these", "there", "here", "to", "for", "with", "using", "use", "by", "at", "on", "in", "into", "onto", "over", "from", "up", "off", "and", "also", "again", "too", "some", "bit", "little", "slightly", "very", "really", "gently", "carefully", "slowly", "quickly", "patient", "patient's", "robot", "arm", "probe", "gantry", "system", "machine", "position", "view"]
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


#: words that put a place beside, above or under a thing: said of a target with no amount, the offset is unknown,
#: and the default (none) would put the tool on the target ("move psm1 next to the needle" went to the needle);
#: said between two targets, the second only says where the first is ("the left kidney beside the spleen")
PLACE_WORDS = frozenset(["above", "over", "below", "under", "beneath", "beside", "near", "next", "behind",
                         "alongside"])
#: phrases that only say the steps go one after another, which every plan does: read word by word, "one" became
#: a value ("scan both kidneys, one at a time" made a 1 N contact)
IN_TURN: tuple[tuple[str, ...], ...] = (
    ("one", "at", "a", "time"), ("one", "after", "the", "other"), ("one", "after", "another"), ("one", "by", "one"),
    ("in", "turn"), ("in", "sequence"),
)


def _without_in_turn(tokens: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(tokens):
        hit = next((p for p in IN_TURN if tuple(tokens[i:i + len(p)]) == p), None)
        if hit is None:
            out.append(tokens[i])
        i += len(hit) if hit else 1
    return out


def drop_fillers(tokens: list[str]) -> list[str]:
    """The tokens without disfluencies anywhere and discourse markers at the start of a clause.

    People talk to the robot as they would to a colleague: "okay, um, scan the spleen", "right, you can
    resume now". Left in, those words read as unknown names (a refusal) or as a side ("right"). "right" and
    "all right" are markers only when a pause, the end, or another marker follows them, so "right kidney"
    and "the right arm" keep their side. When nothing but fillers was said, the markers are kept: "okay"
    alone is a confirmation.
    """
    spoken = [_MICROMETRE if t == "um" and k and _number_like(tokens[k - 1]) else t
              for k, t in enumerate(tokens) if t not in DISFLUENCIES or (t == "um" and k and _number_like(tokens[k - 1]))]
    spoken = _without_in_turn(spoken) or spoken
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


#: "20 um": after a number, "um" is the micrometre (the micro sign written in ASCII), never a pause
_MICROMETRE = "micrometres"


def _number_like(token: str) -> bool:
    return token.replace(".", "", 1).isdigit() or token in NUMBER_WORDS


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

#: imaging modalities that no domain has; the modes near a domain's own are in its skill file (``vocabulary``)
OTHER_MODALITIES: tuple[str, ...] = ("mri", "pet scan")

#: words that say nothing about what to act on; a word outside these and the lexicon is an unknown name
FUNCTION_WORDS: frozenset[str] = frozenset(
    ["a", "an", "the", "this", "that", "these", "those", "my", "your", "our", "his", "her", "their", "its", "it", "them", "they", "he", "she", "we", "you", "i", "me", "us", "one", "ones", "some", "any", "each", "every", "both", "either", "other", "another", "same", "next", "first", "second", "third", "last", "new", "current", "whole", "entire", "small", "big", "large", "little", "tiny", "short", "long", "upper", "lower", "top", "bottom", "front", "back", "middle", "mid", "center", "centre", "side", "area", "region", "part", "portion", "spot", "point", "position", "place", "location", "pose", "view", "image", "picture", "frame", "field", "window", "screen", "monitor", "display", "scene", "table", "bed", "patient", "patient's", "person", "doctor", "surgeon", "nurse", "of", "to", "from", "in", "into", "onto", "on", "at", "by", "for", "with", "without", "over", "under", "above", "below", "beneath", "behind", "beside", "near", "toward", "towards", "through", "across", "along", "around", "about", "up", "down", "off", "out", "away", "and", "or", "but", "then", "than", "so", "as", "is", "are", "be", "been", "being", "was", "were", "do", "does", "did", "done", "have", "has", "had", "get", "got", "make", "made", "please", "could", "would", "can", "will", "shall", "should", "may", "might", "must", "let", "let's", "want", "need", "like", "just", "now", "again", "also", "too", "very", "really", "quite", "bit", "more", "less", "most", "least", "much", "many", "few", "there", "here", "where", "what", "which", "who", "how", "when", "why", "if", "not", "no", "yes", "ok", "okay", "alright", "thanks", "thank", "while", "until", "slowly", "quickly", "gently", "carefully", "softly", "firmly", "steadily", "smoothly", "immediately", "once", "twice", "same", "one's", "that's", "it's", "there's", "what's", "let's", "i'd", "i'll", "we'll", "you'll", "i'm", "we're", "you're", "give", "show", "send", "bring", "put", "take", "go", "move", "start", "begin", "perform", "run", "execute", "carry", "try", "set", "turn", "switch", "sure", "right", "left", "please", "kindly", "maybe", "possibly", "instead", "rather", "only", "even", "still", "enable", "activate", "initiate", "engage",
     "commence", "launch", "select", "choose"]
)

#: phrases that ask for a small amount without a number ("a bit higher", "slightly to the left")
SMALL_AMOUNT: tuple[tuple[str, ...], ...] = (
    ("a", "little", "bit"), ("a", "bit"), ("a", "little"), ("slightly",), ("a", "touch"), ("a", "tad"),
    ("just", "a", "bit"), ("a", "smidge"), ("somewhat",))
#: words that point at a thing without describing it: "the view", "a view of the chest" name no view, and the
#: command set's default is what they ask for; any other word there ("the upper view") describes one
DETERMINERS: frozenset[str] = frozenset(
    ["a", "an", "the", "this", "that", "these", "those", "my", "your", "our", "its", "their", "his", "her"]
)
#: determiners that never stand alone as a pronoun: the word after one belongs to a noun phrase, so "the next view"
#: is a view, not "the" then "view" ("this", "that", "her" can end a clause: "scan this then that")
NOUN_ONLY_DETERMINERS: frozenset[str] = DETERMINERS - frozenset(["this", "that", "these", "those", "his", "her"])
#: words that say how good an image should be, not which one: "a good view of the chest" asks for the default view
QUALITY_WORDS: frozenset[str] = frozenset(
    ["good", "nice", "clear", "full", "proper", "decent", "standard", "normal", "regular", "plain", "simple", "usual",
     "routine"]
)
#: words that say how a step should move (its speed or its force). They are not fillers: a planner that
#: drops "slowly" plans the step at its default speed, which is not what was asked, so a command that says
#: one is asked about by name unless a phrase of the command set covers it ("press harder" sets a force)
MANNER_WORDS: frozenset[str] = frozenset(
    ["slowly", "slow", "quickly", "quick", "fast", "rapidly", "swiftly", "briskly", "hastily", "abruptly",
     "gently", "gentle", "softly", "lightly", "firmly", "forcefully", "hard", "carefully", "cautiously", "firm", "soft",
     "strong", "heavy"]
)
#: words that introduce a free-text label ("save it labelled baseline")
LABEL_WORDS: frozenset[str] = frozenset(["labelled", "labeled", "label", "called", "named", "titled", "tagged",
                                         "caption", "captioned"])


#: whose side a "left" or "right" may be said from other than the patient's: the command set's sides and ways
#: are the patient's, so "to my left" is a question, never read as the patient's left
SPEAKER_POSSESSIVES: frozenset[str] = frozenset(["my", "your", "our", "their", "his", "her", "surgeon's", "surgeons",
                                                 "operator's", "doctor's", "nurse's", "camera's", "viewer's", "user's"])
_SIDE_WORDS = frozenset(["left", "right", "leftward", "rightward", "leftwards", "rightwards"])
#: what may follow a speaker's side for it to be a place ("to my left", "on your right side"), not a name
#: ("your left arm" is psm2 by the command set's own words)
_POINTS_OF_VIEW = frozenset(["side", "view", "perspective", "point", "end", "position", "angle"])
_PLACE_ENDS = frozenset([",", ";", ".", "!", "?", ":", "of", "side", "and", "then", "but", "please"])


def speaker_side(tokens: list[str]) -> str | None:
    """The words of a side said from the speaker's or another person's point of view ("my left"), or None."""
    for k in range(len(tokens) - 1):
        side = tokens[k + 1]
        if tokens[k] in SPEAKER_POSSESSIVES and side in _SIDE_WORDS and (k + 2 == len(tokens)
                                                                          or tokens[k + 2] in _PLACE_ENDS):
            return f"{tokens[k]} {side}"
        # "clockwise from my side": a way seen from someone's place, where the command set's ways are the patient's
        if tokens[k] == "from" and tokens[k + 1] in SPEAKER_POSSESSIVES and tokens[k + 2:k + 3] and \
                tokens[k + 2] in _POINTS_OF_VIEW:
            return " ".join(tokens[k:k + 3])
    return None


#: words between a number and its unit that make the amount an addition to the present value ("one more
#: centimetre", "two extra newtons"): read without them, the number lost its unit and became 1 mm or 2 N
ADDED_WORDS: frozenset[str] = frozenset(["more", "extra", "additional", "further"])
#: words after a force or speed that make it a change of the present one ("two newtons harder")
CHANGE_AFTER: frozenset[str] = frozenset(["more", "less", "harder", "softer", "firmer", "lighter", "stronger",
                                          "weaker", "faster", "slower", "higher", "lower", "up", "down"])
#: dimensions whose arguments are settings, not motions: "by 5 N" is a change of a value the planner does not know
SETTING_DIMENSIONS: frozenset[str] = frozenset(["force", "speed", "percent"])
#: verbs that change a setting from its present value: with an amount not said as the new value ("raise the force
#: 3 N", "gain up 10 %"), the amount is the change
CHANGE_VERBS: frozenset[str] = frozenset(["increase", "raise", "decrease", "lower", "reduce", "bump", "drop", "up",
                                          "down", "boost", "cut", "add", "subtract"])
#: words before an amount that make it the new value itself ("increase the force to 12 N")
NEW_VALUE_WORDS: frozenset[str] = frozenset(["to", "at", "of", "with", "="])

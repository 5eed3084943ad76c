"""Word lists used by the false-hit guard (:mod:`services.cache.guard`).

They are deliberately small and generic (English function words, polarity
pairs, calendar words, a few request-verb synonyms), not tuned per example:
the guard refuses whenever a pair differs in a way these lists cannot explain,
so a missing synonym costs a cache miss, never a wrong answer.
"""

from __future__ import annotations


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# A sentence made only of these (and stopwords) is a greeting, not the question.
GREETINGS = _words(
    """
    hi hiya hello hey morning afternoon evening good thanks thank cheers sorry dear team all folks there
    """
)

# Words whose presence or absence does not change what is being asked.
STOPWORDS = _words(
    """
    a an the is are was were be been being am do does did doing done i me my mine myself you your yours
    we our ours us it its this that these those there here to of for with at by from about as into onto
    can could would will should shall may might must please how what which who whom whose when where
    why and or if so just any some tell know want like need needed needs let lets go going also ever
    really actually exactly currently right now usually typically generally normally possible possibly
    way ways hi hello hey thanks thank cheers ok okay kindly wondering wonder help anyone someone one's
    s t d m ve re ll able whats what's get got getting but quick question sorry bother silly many advance
    hiya dear one user assistant tool um uh er erm hmm yeah yep so much many have has had
    regarding concerning following
    """
)

NEGATORS = _words(
    """
    not no never without none nobody nothing neither nor cannot nowhere
    """
)

# Polarity families: "positive | negative" word lists (matched after light
# stemming). A text using one side of a family while the other text uses only
# the opposite side asks the opposite question: turn on / turn off,
# increase / bring down, allowed / prohibited, benefits / downsides.
_POLARITY = """
on enable enabled activate turn-on switch-on | off disable disabled deactivate turn-off switch-off
open opening reopen | closed close closing shut
start begin | stop end finish
before prior | after
in inside into | out outside
over above more most higher highest increase raise boost bigger larger extend up
    | under below less least fewer lower lowest decrease reduce cut down smaller shrink
include included including | exclude excluded excluding omit
allow allowed permit permitted legal legally lawful lawfully entitled eligible qualify
    | ban banned prohibit prohibited forbid forbidden illegal illegally unlawful unlawfully
safe safely | dangerous unsafe risky harmful
add | remove delete
lock | unlock
subscribe | unsubscribe
mute | unmute
follow | unfollow
block | unblock
install | uninstall
connect | disconnect
freeze | unfreeze
encrypt | decrypt
join | leave quit
buy purchase | sell
import upload | export download
send sent | receive received
accept approve | reject decline deny refuse
pass win won gain profit | fail lose lost loss
benefit advantage pro good best better improve outstanding excellent properly healthy
    | drawback downside disadvantage con bad worst worse damage inadequate poor fault faulty broken harm
hot warm | cold
early earlier | late later
first | last
next | previous
new newer | old older
cheap cheapest | expensive
fast faster | slow slower
long longer | short shorter
full | part partial
arrive arrival arrivals | depart departure departures
deposit | withdraw withdrawal
credit | debit
income incoming inbound | expense outgoing outbound
entry enter | exit
internal domestic | external international
public | private
morning | evening afternoon night
weekday | weekend
eat | avoid
pay charge | refund
paid | unpaid
show visible | hide hidden
maximum max | minimum min
check-in checkin login sign-in | check-out checkout logout sign-out
adult adults grown-up | child children kid kids baby babies toddler infant teen teenager
landlord | tenant renter
employer boss manager | employee staff worker
contractor freelancer self-employed | permanent salaried
home house flat residential domestic personal | business commercial office premises company
undergraduate bachelor | postgraduate master masters phd doctorate
iphone ios | android
mac macos | windows | linux
dog dogs puppy | cat cats kitten
"""
# Also contrast sets with more than two alternatives (mac | windows | linux):
# each line is a family, each "|" part one alternative.
# An indented line continues the family above it.
_FAMILIES = _POLARITY.strip().replace("\n    ", " ").splitlines()
POLARITY: tuple[tuple[frozenset[str], ...], ...] = tuple(
    tuple(frozenset(part.split()) for part in line.split("|")) for line in _FAMILIES
)

# Calendar words: a differing day, month or relative date changes the answer.
CALENDAR = _words(
    """
    monday tuesday wednesday thursday friday saturday sunday
    january february march april may june july august september october november december
    today tomorrow yesterday tonight weekend weekday spring summer autumn fall winter christmas easter
    """
) - {"may", "march", "fall"}  # also ordinary words; only counted when capitalised

NUMBER_WORDS = {
    "zero": "0",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
    "eleven": "11",
    "twelve": "12",
    "thirteen": "13",
    "fourteen": "14",
    "fifteen": "15",
    "sixteen": "16",
    "seventeen": "17",
    "eighteen": "18",
    "nineteen": "19",
    "twenty": "20",
    "thirty": "30",
    "forty": "40",
    "fifty": "50",
    "sixty": "60",
    "seventy": "70",
    "eighty": "80",
    "ninety": "90",
    "hundred": "100",
    "thousand": "1000",
    "million": "1000000",
    "first": "1",
    "second": "2",
    "third": "3",
    "fourth": "4",
    "fifth": "5",
    "sixth": "6",
    "seventh": "7",
    "eighth": "8",
    "ninth": "9",
    "tenth": "10",
    "half": "1/2",
    "quarter": "1/4",
    "double": "x2",
    "twice": "x2",
}

# Generic verb/noun equivalences common in requests. Substituting one for
# another keeps the question; anything else substituted is treated as a change.
_SYNONYM_GROUPS = """
get obtain receive request
change update modify edit amend alter
begin start commence
create make set setup
submit file make lodge send
cancel end terminate stop
contact reach call
buy purchase
cost price charge fee fees much
show see view display find check
choose pick select
help assist support
fix repair solve
use using
shop store
fast quick rapid
switch change move
phone call ring telephone
previous earlier prior
quote quotation estimate
mute silence
street road
grade result mark
register signup sign enrol enroll
order request
offer provide available
time when
book reserve make
write wrote author writer
child children kid kids
adult adults grown-up
deliver delivery shipping postage
weather forecast
track status where
dispute challenge appeal
warranty guarantee
agent agency
activate live
form formation
shut close closed
write compose draft
short brief
summarize summarise sum summary
suggest give propose recommend
polite friendly courteous
rewrite rephrase reword
""".strip().splitlines()
SYNONYM_GROUPS: tuple[frozenset[str], ...] = tuple(frozenset(line.split()) for line in _SYNONYM_GROUPS)

# Prepositional particles: not content words for the edit rule; their meaning
# (turn on / turn off) is judged by the polarity families.
PARTICLES = _words("on off up down in out over under")

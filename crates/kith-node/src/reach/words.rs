//! The word list of short codes: 256 short, distinct English words (one byte each), so a
//! code `7-purple-sausage` carries 16 bits besides its nameplate.

/// The words, index = byte value.
pub(crate) const WORDS: [&str; 256] = [
    "acid", "acorn", "adobe", "agent", "alarm", "album", "alert", "alpha", "amber", "apple",
    "arena", "armor", "arrow", "aspen", "atlas", "autumn", "bacon", "bagel", "baker", "bamboo",
    "banjo", "barley", "basil", "beach", "beacon", "berry", "birch", "bison", "blaze", "bloom",
    "blue", "bread", "brick", "brook", "bubble", "bucket", "bunny", "cabin", "cactus", "camel",
    "candle", "canoe", "canyon", "carrot", "castle", "cedar", "cherry", "chili", "cider", "clay",
    "cloud", "clover", "cobra", "cocoa", "comet", "coral", "cotton", "cougar", "crane", "crater",
    "crayon", "cricket", "daisy", "delta", "desert", "dolphin", "donut", "dragon", "eagle", "echo",
    "eclipse", "elm", "ember", "emu", "falcon", "fern", "ferry", "fiddle", "fig", "finch", "flute",
    "foam", "forest", "fossil", "fox", "frost", "garden", "garlic", "gecko", "gem", "giant",
    "ginger", "glade", "glider", "globe", "gnome", "goose", "grape", "gravy", "guava", "guitar",
    "gull", "habit", "hamlet", "harbor", "hazel", "heron", "hiker", "hippo", "honey", "hotel",
    "husky", "igloo", "indigo", "iris", "island", "ivory", "jacket", "jade", "jaguar", "jelly",
    "jewel", "jockey", "judge", "juice", "jumbo", "kayak", "kettle", "kiwi", "koala", "ladder",
    "lagoon", "lamp", "lark", "lasso", "lava", "lemon", "lilac", "lime", "linen", "lion", "llama",
    "lobster", "lotus", "lucky", "lunar", "lynx", "magnet", "mango", "maple", "marble", "meadow",
    "melon", "mint", "mocha", "moose", "mosaic", "motel", "muffin", "nectar", "nickel", "noodle",
    "oasis", "ocean", "olive", "onion", "opal", "orbit", "orchid", "otter", "oyster", "paddle",
    "panda", "papaya", "parrot", "peach", "pebble", "pepper", "piano", "pickle", "pilot", "pine",
    "pixel", "plaza", "plum", "polar", "pony", "poppy", "puffin", "pumpkin", "purple", "quartz",
    "quilt", "rabbit", "radar", "radish", "raven", "reef", "ribbon", "river", "robin", "rocket",
    "rodeo", "rose", "ruby", "saddle", "sage", "salmon", "sandal", "sausage", "scarf", "shadow",
    "sierra", "silk", "sketch", "sloth", "snow", "sonic", "spice", "spruce", "squid", "stone",
    "sugar", "summit", "sunny", "swan", "tango", "tapir", "tiger", "timber", "toast", "tomato",
    "topaz", "torch", "tulip", "tundra", "turtle", "tuxedo", "umbrella", "unicorn", "urban",
    "valley", "vanilla", "velvet", "violet", "viper", "walnut", "walrus", "willow", "window",
    "wizard", "yeti", "yogurt", "zebra", "zephyr", "zinc",
];
